#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pyvisor/host_function.hpp"
#include "pyvisor/isolation.hpp"
#include "pyvisor/vars.hpp"

namespace pyvisor {

using namespace std::chrono_literals;

/// Durations, one convention everywhere: a duration means exactly that long; `forever` means
/// no deadline; where a per-call value may be left out (std::optional), leaving it out means
/// "the interpreter's default". Zero is never special: a zero bound is simply an immediate one
/// (and where that makes no sense, e.g. default_timeout, it is rejected as config_error).
inline constexpr std::chrono::milliseconds forever = std::chrono::milliseconds::max();

/// How frames travel between host and runner.
enum class transport : std::uint8_t {
  fds,    ///< Child fds 3 (host->python) and 4 (python->host); stdout/stderr go to the log.
  stdio,  ///< Child stdin/stdout, for launchers that only forward stdio (ssh, docker run -i).
};

/// Code run once in the root namespace when the interpreter starts. Every eval and every
/// environment starts from the globals it leaves (including `vars`).
/// How an interpreter's process starts.
enum class spawn_mode : std::uint8_t {
  cold,         ///< a new Python process each time (start ~15-20 ms)
  /// A fork of a warm template process shared by every interpreter with the same Python,
  /// arguments, environment, working directory and isolation (docs/architecture.md "Fork
  /// server"): start ~2.5 ms, restart ~3 ms. Needs the `fds` transport and no bwrap sandbox.
  /// Caveats: the template has no threads and imports only the runner and `preload`; workers
  /// share its hash seed; state is copied on write; descendants that leave a worker's process
  /// group are killed with the template, not with the worker.
  fork_server,
};

struct init_script {
  std::string code;
  pyvisor::vars vars;
  std::string file = "<init>";  ///< File name shown in tracebacks.
};

/// How an interpreter is stopped: tell it to shut down and wait `graceful`, then SIGTERM its
/// whole process group and wait `terminate`, then SIGKILL the group. Then reap.
struct stop_sequence {
  std::chrono::milliseconds graceful = 5000ms;
  std::chrono::milliseconds terminate = 2000ms;
};

/// What happens to a request that timed out (or was cancelled) but does not stop: async code
/// is cancelled at its next await at once; synchronous code that does not yield gets SIGINT
/// (a KeyboardInterrupt inside that request only) after `grace`; if it still has not
/// answered `kill_after` later, the process is killed (and restarted when supervised).
struct interrupt_policy {
  std::chrono::milliseconds grace = 100ms;
  std::chrono::milliseconds kill_after = 2000ms;  ///< `forever`: never kill
};

/// Liveness check of a running interpreter: every `interval` the host asks the runner's
/// watchdog thread for a sign of life (through the interrupt pipe, answered on the dump pipe);
/// a process that gives none within `timeout` (SIGSTOPped, or a C extension holding the GIL)
/// is killed with the Python stack in the error, which counts as a crash (a supervised
/// interpreter is restarted). `interval = forever` turns it off (the default for single
/// interpreters). Needs the `fds` transport.
struct heartbeat_policy {
  std::chrono::milliseconds interval = std::chrono::milliseconds::max();
  std::chrono::milliseconds timeout = 5000ms;
};

/// Backpressure between host and Python (Snex's busy_limits, complete). Host -> Python: bytes
/// waiting to be written to the pipe above `high_water` make the interpreter *busy*: it holds
/// new requests until the backlog is below `low_water`. At most `max_inflight` requests are
/// sent and unanswered; more wait in an admission queue of `max_queued` requests; past that,
/// calls fail at once with `overloaded`. The runner applies the same watermarks to its side
/// (it stops reading when its output backlog or its unfinished work is above them).
/// `disabled = true` turns every limit off.
struct busy_limits {
  std::size_t high_water = std::size_t{8} << 20;
  std::size_t low_water = std::size_t{4} << 20;
  std::size_t max_inflight = 1024;
  std::size_t max_queued = 10000;
  bool disabled = false;
};

/// Text a request printed, returned when eval_options::capture points here.
struct captured_output {
  std::string out;  ///< what the request wrote to sys.stdout
  std::string err;  ///< what it wrote to sys.stderr
};

/// Everything that configures one interpreter. Every field has a usable default.
struct interpreter_options {
  /// Python executable: a name looked up in PATH or a path. Resolved once to the real binary
  /// (a pyenv shim or other wrapper script is resolved through `sys.executable`).
  std::string python = "python3";
  /// Extra interpreter arguments, placed before pyvisor's own (`-X dev`, `-W error`, ...).
  std::vector<std::string> args;
  /// Argv prefix in front of the python command: {"/usr/bin/env", "VAR=1"}, {"ssh", "host"}.
  /// With a launcher, os_pid() is the launcher's pid unless the launcher execs.
  std::vector<std::string> launcher;
  /// Frame transport; `stdio` for launchers that only forward stdin/stdout.
  pyvisor::transport transport = transport::fds;
  /// Cold process or fork of a warm template (see spawn_mode).
  pyvisor::spawn_mode spawn = spawn_mode::cold;
  /// Modules the fork server's template imports before it forks (spawn_mode::fork_server; an
  /// import that fails there is reported by each worker's init script instead, if it imports
  /// them too). Ignored by cold starts: put imports in the init script.
  std::vector<std::string> preload;
  /// Working directory of the child; empty = the host's.
  std::string cwd;
  /// Variables set in the child's environment (after inheritance).
  std::vector<std::pair<std::string, std::string>> environment;
  /// Whether the child inherits the host's environment.
  bool inherit_environment = true;
  /// When non-empty (and inherit_environment is true), only these host variables are inherited.
  std::vector<std::string> inherit_only;
  /// Run in isolated mode (`-I`: PYTHON* variables and the user site are ignored).
  bool isolated = true;
  /// Skip `site` (`-S`): ~5 ms faster start, but no site-packages. Stdlib-only workloads.
  bool no_site = false;
  /// Code run in the root namespace at start.
  pyvisor::init_script init_script;
  /// Bound for the init script (and start-up) to finish: positive, or `forever`.
  std::chrono::milliseconds init_script_timeout = 60s;
  /// true: spawn_interpreter returns once the init script finished (or failed).
  /// false: it returns at once; calls wait until the interpreter is ready.
  bool sync_start = true;
  /// Name used in logs; default "python-<pid>".
  std::string label;
  /// Largest frame accepted in either direction.
  std::size_t max_frame_bytes = std::size_t{64} << 20;
  /// Large bytes travel through memory shared with the process instead of the pipe
  /// (README, "Large payloads"): an argument (a vars value, a call's argument or keyword) that
  /// is a bytes value of at least this many bytes, and a result that is a Python `bytes` of at
  /// least this many. Same semantics and limits as the pipe (max_frame_bytes counts them as if
  /// inline); what does not fit in the area goes by the pipe. 0: never. fds transport only.
  std::size_t shared_memory_threshold = std::size_t{1} << 20;
  /// The size of each direction's area, rounded up to 2 MiB. 0: 2 * max_frame_bytes, at most
  /// 1 GiB; with limits.memory set, 0 means none (the process maps both areas and its address
  /// space limit, RLIMIT_AS, counts them: set a size to have them anyway). Pages are used only
  /// once written, are reused from the lowest offsets, and above shared_memory_keep go back
  /// to the system when their range is freed.
  std::size_t shared_memory_bytes = 0;
  /// Pages of each area below this offset stay resident once written (a steady load reuses
  /// them without page faults); a freed range above it is given back to the system at once.
  std::size_t shared_memory_keep = std::size_t{64} << 20;
  /// Deadline of a request (eval, call, make_env; blocking, async or through the actor) whose
  /// options give none: positive, or `forever`.
  std::chrono::milliseconds default_timeout = 30s;
  /// How stop() and the runtime's destructor end the process.
  stop_sequence shutdown;
  /// Escalation for requests that time out or are cancelled but keep running.
  interrupt_policy interrupt;
  /// Liveness check (off by default).
  heartbeat_policy heartbeat;
  /// Supervised interpreters: requests made while the process restarts wait in a stash of at
  /// most this many (then `overloaded` at once), and go to the new process in order.
  std::size_t restart_stash = 1000;
  /// Backpressure limits.
  pyvisor::busy_limits busy_limits;
  /// Host functions only this interpreter may call (they take precedence over the runtime's).
  std::vector<std::pair<std::string, host_function>> functions;
  /// When set, Python may reach only these of the runtime's exposed functions and actors (by
  /// name; `functions` above stay reachable); a call to another name fails in Python as if it
  /// were not exposed. Unset: every exposed name.
  std::optional<std::vector<std::string>> allowed_host_functions;
  /// Resource limits, identity and sandbox of the process (pyvisor/isolation.hpp).
  pyvisor::isolation isolation;
  /// Python 3.12+: eager task factory; older: drain ready callbacks in the same loop
  /// iteration (bounded). Measured in bench/; see docs/protocol.md.
  bool eager_tasks = true;
  /// Python's `logging` reaches the log sink as structured records (log_source::python_logging:
  /// level, logger, message, traceback, request id) through a handler the runner adds to the
  /// root logger. The root logger's level decides what is sent (Python's default: WARNING; an
  /// init script's `logging.getLogger().setLevel(logging.INFO)` adds info records); with the
  /// handler present, `logging.basicConfig()` needs `force=True` (which removes it). false:
  /// nothing is installed, records go to stderr through Python's lastResort as plain lines.
  bool forward_logging = true;
  /// Directory holding the runner package (`pyvisor/_runner.py`); empty = the built-in default:
  /// env PYVISOR_RUNNER_DIR (as given), else the installed copy next to the program or library,
  /// else (binaries in the build tree) the source tree's `python/`, else the install prefix's.
  std::string runner_dir;
};

/// Per-call options.
struct eval_options {
  /// Unset: the interpreter's default_timeout; `forever`: none; otherwise positive (a value
  /// <= 0 is invalid_argument). On expiry the call is answered errc::timeout and the runner is
  /// told to cancel the request (then the interrupt_policy escalation runs).
  std::optional<std::chrono::milliseconds> timeout;
  /// File name and first line number shown in tracebacks.
  std::string file = "<pyvisor>";
  int line = 1;
  /// When set, what the request prints to sys.stdout/sys.stderr is collected here (filled
  /// before the result is delivered, on success and on error) instead of going to the log
  /// sink. For eval_async it must stay valid until `done` runs. Not available through the
  /// actor interface (a pointer cannot travel in a message): requests that set it there are
  /// answered invalid_argument.
  captured_output* capture = nullptr;
  /// Host binaries (bin) arrive in Python as bytearray instead of bytes.
  bool bytes_as_bytearray = false;
  /// Host binaries arrive in Python as read-only memoryviews; those of the large ones
  /// (shared_memory_threshold) are views of the shared memory itself: no copy. They are
  /// released when the request ends (touching one later raises ValueError): copy what must
  /// outlive the request. Not with bytes_as_bytearray (invalid_argument).
  bool bytes_as_memoryview = false;
  /// On a durable env (env_options::durable) of a supervised interpreter: when this eval
  /// succeeds it is recorded and run again, in order, when the env is rebuilt on a new process.
  bool replay = false;
  /// Pools: requests with the same non-empty key go to the same live worker (a consistent-hash
  /// ring). A single interpreter ignores it.
  std::string key;
};

} // namespace pyvisor
