// Python -> host call round trip (see bench/README.md).
//
//   rt.expose("echo", [](std::int64_t x) { return x; });
// then one eval whose Python code does `--warmup` + `--iters` sequential
//   r = await pyvisor.call("echo", i)
// timing each call with time.perf_counter_ns() inside Python (so the eval's own round trip is
// not in the numbers); every result is checked to be i. Python computes the nearest-rank
// p50/p99 (same definition as the other benchmarks) and returns them in microseconds.
//
// When the runner has no pyvisor.call yet, prints {"bench": "host_call", "skipped": "..."} and
// exits 0, so bench/run reports it as skipped. Prints one JSON object.

#include <cstdint>
#include <cstdio>
#include <exception>
#include <vector>

#include "bench_common.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_host_call";

struct options {
  common_options c;
  long long iters = -1;
  long long warmup = -1;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_host_call [--iters N] [--warmup N] <common>\n"
               "  defaults: --iters 20000 --warmup 2000\n"
               "  --quick:  --iters 5000 --warmup 500\n"
               "%s  Prints one JSON object (or {\"skipped\": why} without pyvisor.call).\n",
               common_usage);
}

constexpr const char* probe_code = "return callable(getattr(pyvisor, 'call', None))";

constexpr const char* bench_code = R"PY(import math
import time
call = pyvisor.call
perf = time.perf_counter_ns
durs = []
for i in range(warmup + iters):
    t0 = perf()
    r = await call("echo", i)
    t1 = perf()
    if r != i:
        raise RuntimeError(f"echo({i}) returned {r!r}")
    if i >= warmup:
        durs.append(t1 - t0)
durs.sort()
def pct(q):
    rank = max(1, min(len(durs), math.ceil(round(q * len(durs), 6))))
    return durs[rank - 1] / 1e3
return [pct(0.50), pct(0.99), sum(durs) / len(durs) / 1e3, durs[0] / 1e3, durs[-1] / 1e3]
)PY";

int run(const options& o) {
  pyvisor::runtime rt;
  rt.expose("echo", [](std::int64_t x) { return x; });
  auto io = interpreter_opts(o.c);
  auto spawned = spawn(prog, rt, io);
  if (!spawned)
    return 1;
  pyvisor::interpreter& py = *spawned;

  json_object j;
  describe(j, "host_call", o.c, io, py);

  auto has = py.eval(probe_code);
  if (!has) {
    std::fprintf(stderr, "%s: probing for pyvisor.call failed: %s\n", prog,
                 has.error().to_string().c_str());
    return 1;
  }
  if (!has->as<bool>()) {
    if (!stop(prog, py))
      return 1;
    j.str("skipped", "the runner has no pyvisor.call yet: python/pyvisor does not provide it")
      .print();
    return 0;
  }

  pyvisor::eval_options eo;
  eo.timeout = std::chrono::minutes{5};
  const auto t0 = clock_type::now();
  auto r = py.eval(bench_code, {{"iters", o.iters}, {"warmup", o.warmup}}, eo);
  const auto t1 = clock_type::now();
  if (!r) {
    std::fprintf(stderr, "%s: eval failed: %s\n", prog, r.error().to_string().c_str());
    return 1;
  }
  auto v = r->to<std::vector<double>>();
  if (!v || v->size() != 5) {
    std::fprintf(stderr, "%s: eval returned a %s, not 5 numbers\n", prog, r->type_name());
    return 1;
  }
  const auto host_calls = py.stats().host_calls;
  if (host_calls < static_cast<std::uint64_t>(o.iters + o.warmup))
    std::fprintf(stderr,
                 "%s: warning: the host counted %llu calls from Python, fewer than the %lld "
                 "made; the numbers may not include a host round trip\n",
                 prog, static_cast<unsigned long long>(host_calls), o.iters + o.warmup);
  if (!stop(prog, py))
    return 1;
  j.integer("iters", o.iters)
    .integer("warmup", o.warmup)
    .integer("host_calls", static_cast<long long>(host_calls))
    .num("p50_us", (*v)[0])
    .num("p99_us", (*v)[1])
    .num("mean_us", (*v)[2])
    .num("min_us", (*v)[3])
    .num("max_us", (*v)[4])
    .num("eval_total_ms", us_since(t0, t1) / 1e3)
    .print();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  return bench_main(prog, argc, argv, o.c,
                    {{"--iters", &o.iters, 5000, 20000}, {"--warmup", &o.warmup, 500, 2000, 0}},
                    usage, [&] { return run(o); });
}
