#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "pyvisor/expected.hpp"

namespace pyvisor::process {

/// What to start. argv[0] must be an absolute path (no PATH search happens here).
struct spawn_request {
  std::vector<std::string> argv;
  std::vector<std::string> env;  ///< "NAME=value" entries: the child's whole environment
  std::string cwd;               ///< empty: the host's
  bool stdio_transport = false;  ///< frames on child fds 0/1 instead of 3/4
};

/// A started child. All fds are the host's ends, O_CLOEXEC and O_NONBLOCK; the child's ends
/// are already closed in the host (otherwise EOF would never be seen).
struct spawned_process {
  pid_t pid = -1;       ///< also the child's process group id
  int pidfd = -1;       ///< readable once the child exited; reap with waitpid(pid)
  int to_child = -1;    ///< frames host -> python (child fd 3, or 0 with stdio transport)
  int from_child = -1;  ///< frames python -> host (child fd 4, or 1 with stdio transport)
  int out = -1;         ///< child stdout (-1 with stdio transport)
  int err = -1;         ///< child stderr
  int interrupt = -1;   ///< interrupt records host -> python (child fd 5; -1 with stdio transport)
};

/// Starts a child with Boost.Process v1 plus the initializers that fix its defects measured on
/// this stack (notes/stack.md §4): own pipe2(O_CLOEXEC) pipes moved above fd 10 before the
/// dup2 onto 0..4, every other fd marked CLOEXEC (close_range), signal dispositions and mask
/// reset, a process group of its own, PR_SET_PDEATHSIG(SIGKILL) with the getppid() race
/// closed, stdin from /dev/null. Never reaps: the caller owns the pid (and must waitpid it).
/// Must be called on a thread that outlives the child (PDEATHSIG fires when the forking
/// *thread* exits): pyvisor calls it on the I/O loop thread.
expected<spawned_process> spawn(const spawn_request& req);

/// Keeps fds 0..4 of the host open (on /dev/null when they are closed), so that no pipe the
/// host creates, ours or Boost.Process's internal exec-error pipe, can be numbered 0..4 and be
/// clobbered by the dup2 onto the child's 0..4. Called once per runtime; idempotent.
void reserve_low_fds();

/// Closes every fd of `p` that is open and resets them to -1.
void close_fds(spawned_process& p);

} // namespace pyvisor::process
