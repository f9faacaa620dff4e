#include "gateway/deploy_units.hpp"

#include <algorithm>
#include <set>

#include "pyvisor/config.hpp"

namespace pyvisor::gateway {

namespace {

/// Adds `name` (a pool or supervisor of `full`) and everything under it to `u`.
void collect(const runtime_spec& full, const std::string& name, deploy_unit& u) {
  for (auto& p : full.pools)
    if (p.options.name == name) {
      u.spec.pools.push_back(p);
      u.pools.push_back(name);
      return;
    }
  for (auto& s : full.supervisors)
    if (s.name == name) {
      u.spec.supervisors.push_back(s);
      for (auto& c : s.children)
        collect(full, c, u);
      return;
    }
}

void finish(const runtime_spec& full, deploy_unit& u) {
  u.spec.supervisor = full.supervisor;
  std::set<std::string> used;
  for (auto& p : u.spec.pools)
    if (!p.tenant.empty())
      used.insert(p.tenant);
  for (auto& t : full.tenants)
    if (used.count(t.name) != 0)
      u.spec.tenants.push_back(t);
  // The loader orders pools and supervisors as the file does; keep that order.
  const auto index_of_pool = [&](const std::string& n) {
    for (std::size_t i = 0; i < full.pools.size(); ++i)
      if (full.pools[i].options.name == n)
        return i;
    return full.pools.size();
  };
  std::stable_sort(u.spec.pools.begin(), u.spec.pools.end(), [&](auto& a, auto& b) {
    return index_of_pool(a.options.name) < index_of_pool(b.options.name);
  });
  u.fingerprint = to_toml(u.spec, true);
}

} // namespace

std::vector<deploy_unit> split_units(const runtime_spec& spec) {
  std::vector<deploy_unit> units;
  if (spec.supervisor.strategy != restart_strategy::one_for_one) {
    deploy_unit u;
    u.name = "*";
    for (auto& c : root_children(spec))
      collect(spec, c, u);
    finish(spec, u);
    units.push_back(std::move(u));
    return units;
  }
  for (auto& c : root_children(spec)) {
    deploy_unit u;
    u.name = c;
    collect(spec, c, u);
    finish(spec, u);
    units.push_back(std::move(u));
  }
  return units;
}

} // namespace pyvisor::gateway
