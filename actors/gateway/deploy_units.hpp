#pragma once

// How the daemon cuts a config into independently replaceable units for reload (docs/http.md,
// "Reload"): each child of the root supervisor (a pool, or a supervisor with its subtree) is a
// unit deployed as its own tree, so a SIGHUP replaces only the units whose effective spec
// changed. When the root strategy is not one_for_one its children depend on each other: the
// whole tree is then one unit.

#include <string>
#include <vector>

#include "pyvisor/runtime_spec.hpp"

namespace pyvisor::gateway {

struct deploy_unit {
  std::string name;          ///< the root child's name ("*" for the whole-tree unit)
  runtime_spec spec;         ///< the unit's own spec (runtime and gateway sections at defaults)
  std::string fingerprint;   ///< to_toml of `spec` with only the tenants it uses: equal = unchanged
  std::vector<std::string> pools;  ///< pool names in the unit
};

/// The units of a valid spec, in root-child order.
std::vector<deploy_unit> split_units(const runtime_spec& spec);

} // namespace pyvisor::gateway
