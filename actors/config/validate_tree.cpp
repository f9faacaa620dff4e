// Names, references and the supervision tree of a runtime_spec: the name syntax, duplicates,
// the pools' tenants, supervisors' children (unknown, listed twice, under two parents) and
// cycles. Also validate() itself and root_children().
#include <functional>
#include <map>
#include <set>

#include "config/config_detail.hpp"
#include "config/validate_detail.hpp"

namespace pyvisor {
namespace config_detail {
namespace {

void check_name(rule_checker& c, const std::string& path, const std::string& name,
                bool supervised) {
  if (!valid_name(name))
    c.out.add(path, "invalid name '" + name + "': use letters, digits, '_' and '-'");
  else if (supervised && name == "root")
    c.out.add(path, "the name 'root' is reserved (the implicit root supervisor)");
}

void check_children(rule_checker& c, const runtime_spec& spec) {
  std::set<std::string> pools;
  for (const auto& p : spec.pools)
    pools.insert(p.options.name);
  std::set<std::string> supervisors;
  for (const auto& s : spec.supervisors)
    supervisors.insert(s.name);
  std::vector<std::string> candidates;
  for (const auto& p : spec.pools)
    candidates.push_back(p.options.name);
  for (const auto& s : spec.supervisors)
    candidates.push_back(s.name);

  std::map<std::string, std::string> parent;  // child -> the first supervisor naming it
  for (const auto& s : spec.supervisors) {
    const auto path = join(join("supervisors", s.name), "children");
    if (s.children.empty())
      c.out.add(path, "a supervisor needs at least one child");
    for (std::size_t j = 0; j < s.children.size(); ++j) {
      const auto& child = s.children[j];
      const auto at = index(path, j);
      bool twice = false;
      for (std::size_t k = 0; k < j && !twice; ++k)
        twice = s.children[k] == child;
      if (twice) {
        c.out.add(at, "child '" + child + "' is listed twice");
      } else if (!pools.count(child) && !supervisors.count(child)) {
        c.out.add(at, "unknown child '" + child + "': no pool or supervisor has that name" +
                        did_you_mean(child, candidates));
      } else if (auto [it, fresh] = parent.emplace(child, s.name); !fresh) {
        c.out.add(at, "'" + child + "' is already a child of supervisor '" + it->second + "'");
      }
    }
  }
}

void check_cycles(rule_checker& c, const runtime_spec& spec) {
  std::map<std::string, std::size_t> by_name;
  for (std::size_t i = 0; i < spec.supervisors.size(); ++i)
    by_name.emplace(spec.supervisors[i].name, i);
  enum class mark { white, grey, black };
  std::vector<mark> marks(spec.supervisors.size(), mark::white);
  std::vector<std::size_t> stack;
  std::function<void(std::size_t)> visit = [&](std::size_t u) {
    marks[u] = mark::grey;
    stack.push_back(u);
    const auto& s = spec.supervisors[u];
    for (std::size_t j = 0; j < s.children.size(); ++j) {
      auto it = by_name.find(s.children[j]);
      if (it == by_name.end())
        continue;
      auto v = it->second;
      if (marks[v] == mark::white) {
        visit(v);
      } else if (marks[v] == mark::grey) {
        std::string cycle;
        bool on = false;
        for (auto w : stack) {
          on = on || w == v;
          if (on)
            cycle += spec.supervisors[w].name + " -> ";
        }
        cycle += spec.supervisors[v].name;
        c.out.add(index(join(join("supervisors", s.name), "children"), j),
                  "supervisor cycle: " + cycle);
      }
    }
    stack.pop_back();
    marks[u] = mark::black;
  };
  for (std::size_t i = 0; i < spec.supervisors.size(); ++i)
    if (marks[i] == mark::white)
      visit(i);
}

} // namespace

void check_tree(rule_checker& c, const runtime_spec& spec) {
  std::set<std::string> seen;
  std::vector<std::string> tenant_names;
  for (const auto& t : spec.tenants) {
    const auto path = join("tenants", t.name);
    check_name(c, path, t.name, false);
    if (!seen.insert(t.name).second)
      c.out.add(path, "duplicate tenant name '" + t.name + "'");
    tenant_names.push_back(t.name);
  }
  std::set<std::string> pools;
  for (const auto& p : spec.pools) {
    const auto path = join("pools", p.options.name);
    check_name(c, path, p.options.name, true);
    if (!pools.insert(p.options.name).second)
      c.out.add(path, "duplicate pool name '" + p.options.name + "'");
    if (!p.tenant.empty() && !seen.count(p.tenant))
      c.out.add(join(path, "tenant"),
                "unknown tenant '" + p.tenant + "'" + did_you_mean(p.tenant, tenant_names));
    if (p.options.worker.spawn == spawn_mode::fork_server)
      for (const auto& t : spec.tenants)
        if (t.name == p.tenant && t.sandbox.kind == sandbox_kind::bwrap)
          c.out.add(join(path, "spawn"), "spawn = \"fork_server\" does not work in tenant '" + t.name +
                                           "' (sandbox = \"bwrap\"): use \"cold\"");
  }
  std::set<std::string> supervisors;
  for (const auto& s : spec.supervisors) {
    const auto path = join("supervisors", s.name);
    check_name(c, path, s.name, true);
    if (!supervisors.insert(s.name).second)
      c.out.add(path, "duplicate supervisor name '" + s.name + "'");
    else if (pools.count(s.name))
      c.out.add(path, "duplicate name '" + s.name + "': a pool has it too");
  }
  check_children(c, spec);
  check_cycles(c, spec);
}

void validate_into(const runtime_spec& spec, problem_sink& out) {
  rule_checker c{out};
  check_tree(c, spec);
  check_settings(c, spec);
}

} // namespace config_detail

std::vector<config_problem> validate(const runtime_spec& spec) {
  config_detail::problem_sink sink;
  config_detail::validate_into(spec, sink);
  return std::move(sink.list);
}

std::vector<std::string> root_children(const runtime_spec& spec) {
  std::set<std::string> named;
  for (const auto& s : spec.supervisors)
    named.insert(s.children.begin(), s.children.end());
  std::vector<std::string> out;
  for (const auto& p : spec.pools)
    if (!named.count(p.options.name))
      out.push_back(p.options.name);
  for (const auto& s : spec.supervisors)
    if (!named.count(s.name))
      out.push_back(s.name);
  return out;
}

} // namespace pyvisor
