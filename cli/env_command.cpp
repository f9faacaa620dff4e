// `pyvisor env sync CONFIG [--tenant NAME]...`: creates or updates the tenants' declarative
// venvs (pyvisor/venv.hpp). See cli/README.md.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "pyvisor/config.hpp"
#include "pyvisor/venv.hpp"

namespace pyvisor::cli {
namespace {

struct sync_args {
  std::string config;
  std::vector<std::string> tenants;
};

void progress_line(std::string_view line) {
  std::string out(line);
  out += '\n';
  write_all(stdout, out);
  std::fflush(stdout);
}

int run_sync(const sync_args& a) {
  const config_result r = load_config(a.config);
  if (!r.ok()) {
    std::string out;
    for (const config_problem& p : r.problems) out += p.to_string() + "\n";
    if (r.problems.empty()) out += a.config + ": invalid config\n";
    write_all(stderr, out);
    return exit_error;
  }
  const runtime_spec& spec = *r.spec;
  for (const std::string& name : a.tenants) {
    const bool known = std::any_of(spec.tenants.begin(), spec.tenants.end(),
                                   [&](const tenant_spec& t) { return t.name == name; });
    if (!known) throw usage_error{"--tenant: no tenant '" + name + "' in " + a.config};
  }
  std::size_t synced = 0;
  for (const tenant_spec& t : spec.tenants) {
    const bool wanted =
        a.tenants.empty() || std::find(a.tenants.begin(), a.tenants.end(), t.name) != a.tenants.end();
    if (!wanted) continue;
    if (!t.venv) {
      if (!a.tenants.empty()) progress_line("tenant " + t.name + ": no venv");
      continue;
    }
    auto done = sync_venv(*t.venv, t.name, progress_line);
    if (!done) {
      std::fprintf(stderr, "error: %s\n", done.error().to_string().c_str());
      return exit_error;
    }
    ++synced;
  }
  if (synced == 0 && a.tenants.empty()) progress_line("no tenant has a venv");
  return std::fflush(stdout) == 0 ? exit_ok : exit_error;
}

} // namespace

command_runner add_env_command(CLI::App& app) {
  auto args = std::make_shared<sync_args>();
  CLI::App* env = app.add_subcommand("env", "manage the tenants' declarative venvs");
  env->require_subcommand(1);
  CLI::App* sync = env->add_subcommand(
      "sync", "create missing venvs, update stale ones (requirements changed), skip the rest");
  sync->footer(
      "Loads CONFIG and makes every tenant's [tenants.NAME.venv] (or only the named tenants') "
      "match its spec: python -m venv, then pip (or uv) install of the requirements, then a "
      "stamp. Prints one progress line per step; exit 0, or 1 at the first failure.");
  sync->add_option("CONFIG", args->config, "the config file (TOML)")->required();
  sync->add_option("--tenant", args->tenants, "only this tenant (repeatable)")
      ->type_name("NAME")
      ->allow_extra_args(false);
  return [args, sync] { return sync->parsed() ? run_sync(*args) : exit_usage; };
}

} // namespace pyvisor::cli
