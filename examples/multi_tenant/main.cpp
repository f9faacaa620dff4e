// Two tenants from one config file: each on its own venv with its own limits, environment and
// host functions, each serving a pool in one supervision tree.
//
//   build/examples/multi_tenant [CONFIG]     (default: examples/multi_tenant/multi_tenant.toml)
//
// It loads the file (every problem is printed as file:line:col), syncs the tenants' venvs when
// they are missing or stale (what `pyvisor env sync CONFIG` does), deploys the tree and shows
// what each tenant's Python sees.

#include <cstdio>
#include <string>

#include "pyvisor/config.hpp"
#include "pyvisor/deployment.hpp"
#include "pyvisor/runtime.hpp"
#include "pyvisor/venv.hpp"

#ifndef PYVISOR_EXAMPLE_CONFIG
#define PYVISOR_EXAMPLE_CONFIG "examples/multi_tenant/multi_tenant.toml"
#endif

namespace {

void show(pyvisor::pool& p, const char* what, const std::string& code) {
  auto v = p.eval(code);
  std::string text;
  if (!v) {
    text = v.error().to_string();
  } else {
    auto s = v->to<std::string>();
    text = s ? *s : "?";
  }
  std::printf("  %-24s %s\n", what, text.c_str());
}

} // namespace

int main(int argc, char** argv) {
  const std::string path = argc > 1 ? argv[1] : PYVISOR_EXAMPLE_CONFIG;
  auto loaded = pyvisor::load_config(path);
  for (auto& p : loaded.problems)
    std::fprintf(stderr, "%s\n", p.to_string().c_str());
  if (!loaded.ok())
    return 1;
  auto spec = *loaded.spec;

  for (auto& t : spec.tenants) {
    if (!t.venv || pyvisor::check_venv(*t.venv).kind == pyvisor::venv_state::up_to_date)
      continue;
    auto synced = pyvisor::sync_venv(*t.venv, t.name, [](std::string_view line) {
      std::printf("%.*s\n", static_cast<int>(line.size()), line.data());
    });
    if (!synced) {
      std::fprintf(stderr, "venv of tenant '%s': %s\n", t.name.c_str(),
                   synced.error().to_string().c_str());
      return 1;
    }
  }

  pyvisor::runtime rt{pyvisor::runtime_options_for(spec.runtime)};
  rt.expose("audit", [](std::string event) {
    std::printf("  [host] audit: %s\n", event.c_str());
    return true;
  });
  auto d = rt.deploy(spec);
  if (!d) {
    std::fprintf(stderr, "deploy: %s\n", d.error().to_string().c_str());
    return 1;
  }

  const std::string limits =
    "import resource\n"
    "mem = resource.getrlimit(resource.RLIMIT_AS)[0]\n"
    "return '%d MiB, %d files' % (mem >> 20, resource.getrlimit(resource.RLIMIT_NOFILE)[0])";
  for (const char* name : {"reports", "hooks"}) {
    auto p = d->find_pool(name);
    if (!p) {
      std::fprintf(stderr, "%s\n", p.error().to_string().c_str());
      return 1;
    }
    std::printf("pool '%s' at %s:\n", name, d->path_of(name).value().c_str());
    show(*p, "tenant (from its env)", "import os\nreturn os.environ.get('TENANT', '-')");
    show(*p, "interpreter", "import sys\nreturn sys.prefix");
    show(*p, "limits per worker", limits);
    show(*p, "host function 'audit'",
         "try:\n    return 'allowed: %s' % await pyvisor.call('audit', 'hello')\n"
         "except Exception as e:\n    return 'refused: %s' % type(e).__name__");
  }

  auto totals = d->find_env("reports", "totals");
  if (totals) {
    (void)totals->eval("seen.append(1)", {}, pyvisor::eval_options{.replay = true});
    auto n = totals->eval("return len(seen)");
    long long items = -1;
    if (n)
      if (auto k = n->to<long long>())
        items = *k;
    std::printf("durable env reports/totals holds %lld item(s)\n", items);
  }
  (void)d->stop();
  return 0;
}
