#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "pyvisor/expected.hpp"
#include "pyvisor/isolation.hpp"

namespace pyvisor::process {

/// An identity (pyvisor/isolation.hpp) resolved to numbers in the host (getpwnam_r,
/// getgrnam_r, getgrouplist), for the child to apply with raw syscalls.
struct resolved_identity {
  bool set_user = false;   ///< change the uid (and then the gid and groups)
  bool set_group = false;  ///< change the gid and the supplementary groups
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<gid_t> groups;  ///< the supplementary group list (setgroups)
  std::string describe;       ///< "user 'x'" / "group 'y'", for messages
};

/// Resolves names or numbers; config_error for an unknown user or group. A user without a
/// group gets the passwd entry's primary group and the initgroups-equivalent supplementary
/// list; with a group, exactly that group. An empty identity resolves to nothing to change.
expected<resolved_identity> resolve_identity(const identity& id);

} // namespace pyvisor::process
