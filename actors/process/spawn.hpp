#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <sys/types.h>
#include <vector>

#include "pyvisor/expected.hpp"
#include "pyvisor/isolation.hpp"

namespace pyvisor::process {

/// What to start. argv[0] must be an absolute path (no PATH search happens here).
struct spawn_request {
  std::vector<std::string> argv;
  std::vector<std::string> env;  ///< "NAME=value" entries: the child's whole environment
  std::string cwd;               ///< empty: the host's
  bool stdio_transport = false;  ///< frames on child fds 0/1 instead of 3/4
  /// Applied to the Python process between fork and exec (process/isolation.hpp): rlimits,
  /// identity, PR_SET_NO_NEW_PRIVS, the seccomp filter. With sandbox_kind::bwrap, `argv`
  /// must already be the bwrap command (bwrap_command): the filter then goes to bwrap on
  /// child fd 7, and python_pid is the sandboxed process (find_sandboxed_python).
  pyvisor::isolation isolation;
  /// >= 0: a host fd the child gets as its fd 7 (a fork-server template's control socket,
  /// process/fork_server.hpp). Not with sandbox_kind::bwrap, whose filter takes fd 7.
  int control_fd = -1;
  /// > 0: the child gets a memfd of twice this size as its fd 8 (shared memory for large
  /// bytes, docs/protocol.md); the host keeps it as spawned_process::shm. fds transport only.
  std::size_t shm_bytes = 0;
};

/// What the exit reason of a process needs to know about how it ran (session.cpp).
struct exit_context {
  std::optional<std::uint64_t> memory;       ///< limits.memory
  std::optional<std::uint64_t> cpu_seconds;  ///< limits.cpu_seconds
  std::optional<std::uint64_t> file_size;    ///< limits.file_size
  /// In a bwrap sandbox: `pid` reports Python's death by signal N as exit code 128 + N.
  bool sandboxed = false;
};

/// A started child. All fds are the host's ends, O_CLOEXEC and O_NONBLOCK; the child's ends
/// are already closed in the host (otherwise EOF would never be seen).
struct spawned_process {
  pid_t pid = -1;       ///< the process the host reaps (pidfd refers to it); see python_pid
  pid_t python_pid = -1;  ///< the Python process (os_pid(), signal target; its pid is also its
                          ///< process group id); -1: the same as pid
  int pidfd = -1;       ///< readable once the child exited; reap with waitpid(pid)
                        ///< (with status_pipe: the read end of the worker's status pipe)
  int to_child = -1;    ///< frames host -> python (child fd 3, or 0 with stdio transport)
  int from_child = -1;  ///< frames python -> host (child fd 4, or 1 with stdio transport)
  int out = -1;         ///< child stdout (-1 with stdio transport)
  int err = -1;         ///< child stderr
  int interrupt = -1;   ///< interrupt records host -> python (child fd 5; -1 with stdio transport)
  int dump = -1;        ///< stack dumps python -> host (child fd 6; -1 when not set up)
  int shm = -1;         ///< the memfd of child fd 8 (2 * shm_bytes bytes; -1: none)
  std::size_t shm_bytes = 0;
  exit_context context;  ///< limits and sandbox, for the exit reason
  /// A fork-server worker (process/fork_server.hpp): `pid` is the template's child, not the
  /// host's. `pidfd` is then a pipe on which the template writes the worker's wait status
  /// (4 bytes, native int) once the worker exited and its process group was killed, before it
  /// reaps the worker; EOF without a status means the template died (the worker dies with
  /// it: PR_SET_PDEATHSIG). The host never reaps `pid`.
  bool status_pipe = false;

  /// The Python process (and its process group).
  pid_t python() const noexcept { return python_pid > 0 ? python_pid : pid; }
};

/// Starts a child with Boost.Process v1 plus the initializers that fix its defects measured on
/// this stack (notes/stack.md §4): own pipe2(O_CLOEXEC) pipes moved above fd 10 before the
/// dup2 onto 0..6, every other fd marked CLOEXEC (close_range), signal dispositions and mask
/// reset, stdin from /dev/null. Never reaps: the caller owns `pid` (and must waitpid it).
///
/// The process Boost forks is a **guard** G (`pid`), not Python: a child subreaper
/// (PR_SET_CHILD_SUBREAPER) that forks the Python process P (`python_pid`: its own process
/// group, PR_SET_PDEATHSIG(SIGKILL) relative to G) and holds no fd of the host. When P exits,
/// or when the host dies (G's PR_SET_PDEATHSIG), G SIGKILLs P's process group and then every
/// process left in its subtree (setsid'd and double-forked descendants are reparented to it),
/// reaps P last and exits with P's status (the same code, or killed by the same signal), so
/// waitpid(pid) reads what Python did. SIGTERM/SIGINT/SIGQUIT sent to G are forwarded to P's
/// group. Not covered: G itself being SIGKILLed by someone else (P still dies, via its
/// PDEATHSIG; its escaped descendants then survive), descendants G may not signal (another
/// uid), and kernels without /proc/PID/task/TID/children (CONFIG_PROC_CHILDREN).
///
/// Isolation (req.isolation, prepared here by prepare_isolation: identity resolved, seccomp
/// compiled, work dir created) is applied by P after its fds are in place: rlimits, then
/// identity (PDEATHSIG set again), PR_SET_NO_NEW_PRIVS, the seccomp filter (or, with bwrap,
/// the filter on fd 7 for `bwrap --seccomp 7`). With bwrap P execs bwrap, and `python_pid` is
/// the sandboxed Python (its own process group, made by setsid(1) inside the sandbox), found
/// below bwrap's init before spawn returns: interrupts, stack dumps and the stop sequence's
/// group signals reach Python, not bwrap (whom SIGINT would kill).
///
/// Must be called on a thread that outlives the child (PDEATHSIG fires when the forking
/// *thread* exits): pyvisor calls it on the I/O loop thread.
expected<spawned_process> spawn(const spawn_request& req);

/// Keeps fds 0..8 of the host open (on /dev/null when they are closed), so that no pipe the
/// host creates, ours or Boost.Process's internal exec-error pipe, can be numbered 0..8 and be
/// clobbered by a dup2 onto the child's 0..8 (6 the dump pipe, 7 a template's control socket
/// or bwrap's seccomp program, 8 the shared memory). Called once per runtime; idempotent.
void reserve_low_fds();

/// A memfd of 2 * `bytes` bytes (sparse: pages exist once written), O_CLOEXEC; -1 with errno
/// when it cannot be made.
int make_shared_memory(std::size_t bytes);

/// Closes every fd of `p` that is open and resets them to -1.
void close_fds(spawned_process& p);

/// Closes `fd` if it is open and resets it to -1.
void close_fd(int& fd);

/// Makes the host's ends of `p` non-blocking (the pidfd too when it is a status pipe).
void set_nonblocking(const spawned_process& p);

/// What the exit reason needs to know of a process started from `req`.
exit_context exit_context_of(const spawn_request& req);

} // namespace pyvisor::process
