#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "pyvisor/vars.hpp"

namespace pyvisor {

using namespace std::chrono_literals;

/// How frames travel between host and runner.
enum class transport : std::uint8_t {
  fds,    ///< Child fds 3 (host->python) and 4 (python->host); stdout/stderr go to the log.
  stdio,  ///< Child stdin/stdout, for launchers that only forward stdio (ssh, docker run -i).
};

/// Code run once in the root namespace when the interpreter starts. Every eval and every
/// environment starts from the globals it leaves (including `vars`).
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
  /// Bound for the init script (and start-up) to finish.
  std::chrono::milliseconds init_script_timeout = 60s;
  /// true: spawn_interpreter returns once the init script finished (or failed).
  /// false: it returns at once; calls wait until the interpreter is ready.
  bool sync_start = true;
  /// Name used in logs; default "python-<pid>".
  std::string label;
  /// Largest frame accepted in either direction.
  std::size_t max_frame_bytes = std::size_t{64} << 20;
  /// Timeout of a call when its options give none. 0 = no timeout.
  std::chrono::milliseconds default_timeout = 30s;
  /// How stop() and the runtime's destructor end the process.
  stop_sequence shutdown;
  /// Directory holding the runner package (`pyvisor/_runner.py`); empty = the built-in default
  /// (env PYVISOR_RUNNER_DIR, else the installed copy, else the source tree's `python/`).
  std::string runner_dir;
};

/// Per-call options.
struct eval_options {
  /// 0 = the interpreter's default_timeout. On expiry the call returns errc::timeout and the
  /// runner is told to cancel the request.
  std::chrono::milliseconds timeout = 0ms;
  /// File name and first line number shown in tracebacks.
  std::string file = "<pyvisor>";
  int line = 1;
};

} // namespace pyvisor
