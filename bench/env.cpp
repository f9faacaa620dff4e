// Environments (see bench/README.md).
//
// The interpreter's init script binds `x = 1` in root. Two measurements, each `--warmup`
// untimed then `--iters` timed, std::chrono::steady_clock, nearest-rank percentiles:
//   cycle: { auto e = py.make_env(); e.eval("return x"); }   (e's destructor drops the env)
//          i.e. one make_env round trip + one eval round trip + the drop notification;
//          make_env alone is reported as make_*.
//   eval:  e.eval("return x") in one env made beforehand.
// Every reply is checked to be the integer 1 (outside the timed window). Prints one JSON
// object. bench/run relates both to eval_serial (a plain interpreter eval) of the same run.

#include <cstdio>
#include <exception>
#include <optional>
#include <vector>

#include "bench_common.hpp"
#include "pyvisor/env.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_env";

struct options {
  common_options c;
  long long iters = -1;        // cycles
  long long eval_iters = -1;   // evals in one env
  long long warmup = -1;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_env [--iters N] [--eval-iters N] [--warmup N] <common>\n"
               "  defaults: --iters 5000 (make_env+eval+drop cycles) --eval-iters 20000\n"
               "            --warmup 500 (for each)\n"
               "  --quick:  --iters 1000 --eval-iters 5000 --warmup 100\n"
               "%s  Prints one JSON object.\n",
               common_usage);
}

bool check(const pyvisor::expected<pyvisor::value>& r, const char* what, long long i) {
  if (!r) {
    std::fprintf(stderr, "%s: %s #%lld failed: %s\n", prog, what, i,
                 r.error().to_string().c_str());
    return false;
  }
  auto v = r->to<long>();
  if (!v || *v != 1) {
    std::fprintf(stderr, "%s: %s #%lld returned a %s, not 1\n", prog, what, i, r->type_name());
    return false;
  }
  return true;
}

int run(const options& o) {
  pyvisor::runtime rt;
  auto io = interpreter_opts(o.c);
  io.init_script.code = "x = 1";
  auto spawned = spawn(prog, rt, io);
  if (!spawned)
    return 1;
  pyvisor::interpreter& py = *spawned;

  // make_env + eval + drop.
  std::vector<double> cycle(static_cast<std::size_t>(o.iters));
  std::vector<double> make(static_cast<std::size_t>(o.iters));
  for (long long k = -o.warmup; k < o.iters; ++k) {
    std::optional<pyvisor::expected<pyvisor::value>> r;
    const auto t0 = clock_type::now();
    clock_type::time_point t1;
    {
      auto e = py.make_env();
      t1 = clock_type::now();
      if (!e) {
        std::fprintf(stderr, "%s: make_env #%lld failed: %s\n", prog, k + o.warmup,
                     e.error().to_string().c_str());
        return 1;
      }
      r.emplace(e->eval("return x"));
    }  // last handle gone: the env is dropped
    const auto t2 = clock_type::now();
    if (!check(*r, "env cycle", k + o.warmup))
      return 1;
    if (k >= 0) {
      cycle[static_cast<std::size_t>(k)] = us_since(t0, t2);
      make[static_cast<std::size_t>(k)] = us_since(t0, t1);
    }
  }

  // eval in one existing env.
  std::vector<double> evals(static_cast<std::size_t>(o.eval_iters));
  {
    auto e = py.make_env();
    if (!e) {
      std::fprintf(stderr, "%s: make_env failed: %s\n", prog, e.error().to_string().c_str());
      return 1;
    }
    for (long long k = -o.warmup; k < o.eval_iters; ++k) {
      const auto t0 = clock_type::now();
      auto r = e->eval("return x");
      const auto t1 = clock_type::now();
      if (!check(r, "env eval", k + o.warmup))
        return 1;
      if (k >= 0)
        evals[static_cast<std::size_t>(k)] = us_since(t0, t1);
    }
  }

  json_object j;
  describe(j, "env", o.c, io, py);
  if (!stop(prog, py))
    return 1;
  const auto c = summarize(cycle);
  const auto m = summarize(make);
  const auto e = summarize(evals);
  j.integer("iters", o.iters)
    .integer("eval_iters", o.eval_iters)
    .integer("warmup", o.warmup)
    .num("cycle_p50_us", c.p50)
    .num("cycle_p99_us", c.p99)
    .num("cycle_mean_us", c.mean)
    .num("make_p50_us", m.p50)
    .num("make_p99_us", m.p99)
    .num("eval_p50_us", e.p50)
    .num("eval_p99_us", e.p99)
    .num("eval_mean_us", e.mean)
    .print();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  return bench_main(prog, argc, argv, o.c,
                    {{"--iters", &o.iters, 1000, 5000},
                     {"--eval-iters", &o.eval_iters, 5000, 20000},
                     {"--warmup", &o.warmup, 100, 500, 0}},
                    usage, [&] { return run(o); });
}
