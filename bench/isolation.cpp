// The cost of tenant isolation (issue 10): spawn-to-ready time and serial eval round trip of an
// interpreter with no isolation (the baseline, measured in the same run), with rlimits, with
// the bubblewrap sandbox, and with bubblewrap plus the seccomp filter. Variants the machine
// cannot run (no working bwrap, no seccomp) are left out of the JSON, with a note on stderr.
// Prints one JSON object.

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "pyvisor/runtime.hpp"

#include "bench_common.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_isolation";

struct options {
  common_options c;
  long long iters = -1;
  long long evals = -1;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_isolation [--iters N] [--evals N] <common>\n"
               "  defaults: --iters 20 starts, --evals 2000 per variant (--quick: 5, 300)\n"
               "%s  Prints one JSON object.\n",
               common_usage);
}

struct variant {
  const char* name;
  pyvisor::isolation iso;
};

/// Spawn-to-ready and eval p50 of one variant; false when it cannot start here.
bool measure(const options& o, pyvisor::runtime& rt, const variant& v, json_object& j) {
  auto io = interpreter_opts(o.c);
  io.isolation = v.iso;
  std::vector<double> spawn_us, eval_us;
  for (long long i = 0; i < o.iters; ++i) {
    const auto t0 = clock_type::now();
    auto py = rt.spawn_interpreter(io);
    const auto t1 = clock_type::now();
    if (!py) {
      std::fprintf(stderr, "%s: variant %s left out: %s\n", prog, v.name,
                   py.error().to_string().c_str());
      return false;
    }
    spawn_us.push_back(us_since(t0, t1));
    if (i == 0)
      for (long long k = 0; k < o.evals; ++k) {
        const auto e0 = clock_type::now();
        if (!py->eval("return 1"))
          return false;
        eval_us.push_back(us_since(e0, clock_type::now()));
      }
    if (!stop(prog, *py))
      return false;
  }
  auto s = summarize(spawn_us);
  auto e = summarize(eval_us);
  const std::string n = v.name;
  j.num(n + "_spawn_p50_ms", s.p50 / 1e3).num(n + "_eval_p50_us", e.p50);
  return true;
}

int run(const options& o) {
  pyvisor::runtime rt{pyvisor::runtime_options{.log = {}}};
  pyvisor::isolation limits;
  limits.limits.memory = std::uint64_t{2} << 30;
  limits.limits.open_files = 256;
  limits.limits.cpu_seconds = 3600;
  pyvisor::isolation bwrap;
  bwrap.sandbox.kind = pyvisor::sandbox_kind::bwrap;
  pyvisor::isolation bwrap_seccomp = bwrap;
  bwrap_seccomp.sandbox.seccomp = true;
  const std::vector<variant> variants{
    {"plain", {}}, {"rlimits", limits}, {"bwrap", bwrap}, {"bwrap_seccomp", bwrap_seccomp}};
  json_object j;
  j.str("bench", "isolation").str("python", o.c.python).integer("iters", o.iters)
    .integer("evals", o.evals);
  for (auto& v : variants)
    if (!measure(o, rt, v, j) && std::string{v.name} == "plain")
      return 1;
  j.print();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  return bench_main(prog, argc, argv, o.c,
                    {{"--iters", &o.iters, 5, 20}, {"--evals", &o.evals, 300, 2000}}, usage,
                    [&] { return run(o); });
}
