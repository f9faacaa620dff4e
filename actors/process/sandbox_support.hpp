#pragma once

#include <string>

#include "pyvisor/expected.hpp"
#include "pyvisor/isolation.hpp"

namespace pyvisor::process {

/// What this host can do for isolation, probed once (the first call) and cached.
struct sandbox_support {
  bool bwrap = false;        ///< bubblewrap found and a trial sandbox ran
  std::string bwrap_path;    ///< its absolute path
  std::string bwrap_error;   ///< why not
  std::string setsid_path;   ///< util-linux setsid(1), run inside the sandbox before Python
  bool userns = false;       ///< an unprivileged user may create a user namespace
  std::string userns_error;  ///< why not
  bool seccomp = false;      ///< seccomp filters (CONFIG_SECCOMP_FILTER)
  std::string seccomp_error;
};

/// Probes on the first call: bwrap (a trial `bwrap --ro-bind / / --unshare-pid ... true`),
/// unprivileged user namespaces (a forked child, dropped to nobody when the host is root,
/// tries unshare(CLONE_NEWUSER)), seccomp (prctl). Thread-safe.
const sandbox_support& host_sandbox_support();

/// Checks an isolation against the host (config_error naming what is missing or wrong): bad
/// limits, an identity when the host is not root or naming an unknown user or group, bwrap
/// missing or not working (or, with an identity, no unprivileged user namespaces), seccomp
/// unsupported, unknown syscall names, sandbox paths that are not absolute.
expected<void> check_isolation(const isolation& iso);

} // namespace pyvisor::process
