#pragma once

#include <cstddef>
#include <linux/filter.h>
#include <memory>
#include <sys/resource.h>
#include <sys/types.h>
#include <vector>

#include "process/identity.hpp"
#include "process/seccomp_filter.hpp"
#include "pyvisor/expected.hpp"
#include "pyvisor/isolation.hpp"

namespace pyvisor::process {

/// The child fd `bwrap --seccomp` reads the filter from (the first one above the protocol fds).
constexpr int sandbox_seccomp_fd = 7;

/// What the Python process applies to itself between fork and exec: plain data the host
/// prepared, read by the child without allocating (apply_isolation).
struct child_isolation {
  struct limit {
    int resource = 0;
    rlimit value{};
  };
  limit limits[8];  ///< everything but RLIMIT_NOFILE
  int n_limits = 0;
  bool has_nofile = false;  ///< RLIMIT_NOFILE, set after the fd shuffle
  rlimit nofile{};
  bool set_groups = false;  ///< setgroups + setresgid
  bool set_uid = false;     ///< setresuid (after the groups)
  uid_t uid = 0;
  gid_t gid = 0;
  const gid_t* groups = nullptr;
  std::size_t n_groups = 0;
  bool no_new_privs = false;
  const sock_fprog* filter = nullptr;  ///< installed before exec (no sandbox)
  int seccomp_fd_src = -1;  ///< with bwrap: the filter's memfd, to child fd sandbox_seccomp_fd
};

/// Everything prepared for one spawn; owns what `child` points to. Not copyable (pointers).
class isolation_plan {
public:
  isolation_plan() = default;
  isolation_plan(const isolation_plan&) = delete;
  isolation_plan& operator=(const isolation_plan&) = delete;
  ~isolation_plan();

  child_isolation child;
  resolved_identity ident;

private:
  friend expected<std::unique_ptr<isolation_plan>> prepare_isolation(const isolation&);
  seccomp_program program_;
  sock_fprog fprog_{};
  int memfd_ = -1;
};

/// Prepares `iso` in the host: the rlimits, the identity (resolved), the seccomp program
/// (compiled; with bwrap in a memfd for --seccomp) and, with bwrap, the work dir (created 0700
/// and owned by the identity when missing). Errors: config_error (unknown user, syscall) or
/// spawn_failed (the work dir cannot be created).
expected<std::unique_ptr<isolation_plan>> prepare_isolation(const isolation& iso);

/// In the child, after its fds are in place: rlimits, then NOFILE, then setgroups -> setresgid
/// -> setresuid (raw syscalls: the process is a fork of a threaded host), PR_SET_PDEATHSIG
/// again after a uid change (the kernel clears it; false if `parent` died meanwhile), then
/// PR_SET_NO_NEW_PRIVS, then the seccomp filter. Async-signal-safe. nullptr on success, else
/// the step that failed (errno set).
const char* apply_isolation(const child_isolation& c, pid_t parent) noexcept;

} // namespace pyvisor::process
