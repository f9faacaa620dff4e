#include "facade/tenant_options.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "pyvisor/venv.hpp"

namespace pyvisor::detail {

void apply_environment(const environment_policy& policy, interpreter_options& opts) {
  opts.inherit_environment = !policy.inherit.empty();
  opts.inherit_only = policy.inherit;
  auto own = std::move(opts.environment);
  opts.environment = policy.set;
  for (auto& kv : own)  // the pool's own values win
    opts.environment.push_back(std::move(kv));
}

namespace {

std::string read_file(const std::string& path, std::string& why) {
  std::ifstream in{path, std::ios::binary};
  if (!in) {
    why = "cannot read init_file '" + path + "'";
    return {};
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

} // namespace

pool_options resolve_pool(const pool_spec& spec, const tenant_spec* tenant,
                          std::vector<std::string>& problems) {
  auto opts = spec.options;
  auto& w = opts.worker;
  const std::string where = "pool '" + opts.name + "': ";
  if (tenant != nullptr) {
    const std::string twhere = where + "tenant '" + tenant->name + "': ";
    if (tenant->venv) {
      auto st = check_venv(*tenant->venv);
      if (st.kind != venv_state::up_to_date)
        problems.push_back(twhere + "venv '" + tenant->venv->path + "' is " +
                           std::string{to_string(st.kind)} + " (" + st.detail + "): " +
                           venv_fix_hint("CONFIG"));
      w.python = venv_python(*tenant->venv);
    } else {
      w.python = tenant->python;
    }
    apply_environment(tenant->environment, w);
    w.isolation.limits = tenant->limits;
    w.isolation.identity = tenant->identity;
    w.isolation.sandbox = tenant->sandbox;
    w.allowed_host_functions = tenant->host_functions;
  }
  if (spec.memory_budget) {
    auto most = std::max<std::size_t>({opts.workers, opts.autoscale.max_workers, 1});
    w.isolation.limits.memory = *spec.memory_budget / most;
  }
  if (!spec.init_file.empty()) {
    std::string why;
    auto code = read_file(spec.init_file, why);
    if (!why.empty())
      problems.push_back(where + why);
    w.init_script.code = std::move(code);
    w.init_script.file = spec.init_file;
  }
  w.preload = spec.preload;  // the fork server's template imports them (spawn = fork_server)
  if (!spec.preload.empty()) {
    // After the init script, so its line numbers stay those of the file.
    std::string line = "\nimport ";
    for (std::size_t i = 0; i < spec.preload.size(); ++i)
      line += (i ? ", " : "") + spec.preload[i];
    w.init_script.code += line + "\n";
  }
  return opts;
}

} // namespace pyvisor::detail
