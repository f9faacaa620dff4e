#pragma once

#include <string>
#include <vector>

#include "pyvisor/expected.hpp"
#include "pyvisor/pool_options.hpp"
#include "pyvisor/runtime_spec.hpp"

namespace pyvisor::detail {

/// The pool options a pool_spec deploys with: its tenant's interpreter (a venv's python, which
/// must be synced and up to date), environment policy, limits, identity, sandbox and host
/// function allowlist; the memory budget split over its largest worker count; the init file
/// read and the preload imports added. `tenant` may be null (the host's python3, no isolation).
/// Every problem found is appended to `problems` ("pool 'x': ..."); the result is valid only
/// when none was added.
pool_options resolve_pool(const pool_spec& pool, const tenant_spec* tenant,
                          std::vector<std::string>& problems);

/// The child environment of a tenant: nothing of the host's but `inherit` (names; LD_* and
/// PYTHON* only when named), then `set`.
void apply_environment(const environment_policy& policy, interpreter_options& opts);

} // namespace pyvisor::detail
