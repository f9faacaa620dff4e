// Interpreter pools (issue 9): throughput of a pool of 2 under 64 blocking callers, and what the
// pool's dispatch adds to one call. In one run, on one runtime:
//
//   pool    = rt.spawn_pool(pool_options{.workers = 2, .worker = <common options>})
//   direct  = rt.spawn_interpreter(<the same options>)   (heartbeat as the pool's workers get)
//
// 1. Throughput: --threads (64) plain C++ threads each call `pool.eval("return 1")` in a loop:
//    --warmup-ms untimed, then (once every thread finished its warm-up call) all are released
//    together until --duration-ms; the call in flight at the deadline is finished and counted.
//    calls/s = calls / (release -> last thread done). Same harness as bench/ppe_baseline.py and
//    bench/execnet_baseline.py, so bench/run's ratio_pool_to_ppe / _to_execnet compare like with
//    like. The same load is then run against `direct` (one interpreter, 64 callers) for context.
// 2. Dispatch overhead: serial `pool.eval("return 1")` vs serial `direct.eval("return 1")` from
//    one thread, in alternating blocks of --block calls (pool, direct, direct, pool, ...: ABBA,
//    so drift and noise hit both equally), --iters timed calls each after --warmup each.
//
// Every reply is checked to be the integer 1 (outside the timed window in the serial phase).
// Prints one JSON object.

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "pyvisor/pool.hpp"
#include "pyvisor/pool_options.hpp"
#include "pyvisor/pool_stats.hpp"
#include "pyvisor/runtime.hpp"

#include "bench_common.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_pool";
constexpr const char* code = "return 1";

struct options {
  common_options c;
  long long workers = 2;
  long long threads = 64;
  long long duration_ms = -1;
  long long warmup_ms = -1;
  long long iters = -1;
  long long warmup = -1;
  long long block = 500;
  bool direct_throughput = true;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_pool [--workers N] [--threads N] [--duration-ms N] [--warmup-ms N]\n"
               "                  [--iters N] [--warmup N] [--block N] [--no-direct-throughput]\n"
               "                  <common>\n"
               "  defaults: --workers 2 --threads 64 --duration-ms 5000 --warmup-ms 1000\n"
               "            --iters 20000 --warmup 2000 --block 500\n"
               "  --quick:  --duration-ms 1000 --warmup-ms 200 --iters 5000 --warmup 500\n"
               "%s  Prints one JSON object.\n",
               common_usage);
}

// Whether an eval result is the integer 1; prints why not.
bool is_one(const pyvisor::expected<pyvisor::value>& r, const char* what) {
  if (!r) {
    std::fprintf(stderr, "%s: %s failed: %s\n", prog, what, r.error().to_string().c_str());
    return false;
  }
  auto v = r->to<long>();
  if (!v || *v != 1) {
    std::fprintf(stderr, "%s: %s returned a %s, not 1\n", prog, what, r->type_name());
    return false;
  }
  return true;
}

struct load_result {
  long long calls = 0;
  double seconds = 0;
  double per_s = 0;
  summary call;  // per-call latency under load
  bool ok = false;
};

// `threads` threads calling `eval()` (returns the expected<value>) in a loop: warm-up, then the
// timed phase (see the file comment).
template <class Eval>
load_result run_load(long long threads, long long warmup_ms, long long duration_ms,
                     const char* what, Eval eval) {
  const auto n = static_cast<std::size_t>(threads);
  std::barrier sync(static_cast<std::ptrdiff_t>(n + 1));
  std::atomic<bool> failed{false};
  // Written by the main thread before the barrier phases that publish them.
  clock_type::time_point warm_end{}, end{};
  std::vector<long long> counts(n, 0);
  std::vector<std::vector<double>> lat(n);

  auto body = [&](std::size_t i) {
    // Whether the reply is 1; the first bad one is reported and stops every thread.
    auto check = [&](const pyvisor::expected<pyvisor::value>& r) {
      bool good = false;
      if (r) {
        auto v = r->to<long>();
        good = v && *v == 1;
      }
      if (!good && !failed.exchange(true))
        is_one(r, what);
      return good;
    };
    sync.arrive_and_wait();  // 1: warm-up starts
    while (!failed.load(std::memory_order_relaxed) && clock_type::now() < warm_end)
      if (!check(eval()))
        break;
    sync.arrive_and_wait();  // 2: everyone finished warming up (nothing in flight)
    sync.arrive_and_wait();  // 3: timed phase starts
    auto& samples = lat[i];
    samples.reserve(1 << 14);
    long long k = 0;
    while (!failed.load(std::memory_order_relaxed)) {
      const auto t0 = clock_type::now();
      if (t0 >= end)
        break;
      auto r = eval();
      samples.push_back(us_since(t0, clock_type::now()));
      if (!check(r))
        break;
      ++k;
    }
    counts[i] = k;
  };

  std::vector<std::thread> ts;
  ts.reserve(n);
  for (std::size_t i = 0; i < n; ++i)
    ts.emplace_back(body, i);
  warm_end = clock_type::now() + std::chrono::milliseconds{warmup_ms};
  sync.arrive_and_wait();  // 1
  sync.arrive_and_wait();  // 2
  const auto t_start = clock_type::now();
  end = t_start + std::chrono::milliseconds{duration_ms};
  sync.arrive_and_wait();  // 3
  for (auto& t : ts)
    t.join();
  const auto t_done = clock_type::now();

  load_result res;
  res.ok = !failed.load();
  for (auto c : counts)
    res.calls += c;
  res.seconds = us_since(t_start, t_done) / 1e6;
  res.per_s = res.seconds > 0 ? static_cast<double>(res.calls) / res.seconds : 0;
  std::vector<double> all;
  all.reserve(static_cast<std::size_t>(res.calls) + n);
  for (auto& s : lat)
    all.insert(all.end(), s.begin(), s.end());
  if (!all.empty())
    res.call = summarize(all);
  return res;
}

int run(const options& o) {
  pyvisor::runtime rt;
  auto io = interpreter_opts(o.c);

  pyvisor::pool_options po;
  po.name = "bench";
  po.worker = io;
  po.workers = static_cast<std::size_t>(o.workers);
  const auto p0 = clock_type::now();
  auto spawned = rt.spawn_pool(po);
  const auto p1 = clock_type::now();
  if (!spawned) {
    std::fprintf(stderr, "%s: spawn_pool(workers=%lld, python=%s) failed: %s\n", prog,
                 o.workers, o.c.python.c_str(), spawned.error().to_string().c_str());
    return 1;
  }
  pyvisor::pool pool = std::move(*spawned);

  // The direct interpreter: the workers' options, with the liveness watchdog the pool turns on
  // for its workers (so the two differ only in the path a request takes).
  auto dio = io;
  if (dio.heartbeat.interval == pyvisor::heartbeat_policy{}.interval)
    dio.heartbeat = po.heartbeat;
  auto direct = spawn(prog, rt, dio);
  if (!direct)
    return 1;

  // 1. Throughput under `threads` blocking callers.
  auto tp = run_load(o.threads, o.warmup_ms, o.duration_ms, "pool eval",
                     [&] { return pool.eval(code); });
  if (!tp.ok)
    return 1;
  load_result dtp;
  if (o.direct_throughput) {
    dtp = run_load(o.threads, o.warmup_ms, o.duration_ms, "direct eval",
                   [&] { return direct->eval(code); });
    if (!dtp.ok)
      return 1;
  }

  // 2. Serial latency, pool vs direct, in ABBA blocks.
  for (long long i = 0; i < o.warmup; ++i) {
    if (!is_one(pool.eval(code), "pool eval (warm-up)") ||
        !is_one(direct->eval(code), "direct eval (warm-up)"))
      return 1;
  }
  std::vector<double> pool_us, direct_us;
  pool_us.reserve(static_cast<std::size_t>(o.iters));
  direct_us.reserve(static_cast<std::size_t>(o.iters));
  auto timed_block = [&](bool use_pool, long long count) {
    auto& out = use_pool ? pool_us : direct_us;
    for (long long k = 0; k < count; ++k) {
      const auto t0 = clock_type::now();
      auto r = use_pool ? pool.eval(code) : direct->eval(code);
      out.push_back(us_since(t0, clock_type::now()));
      if (!is_one(r, use_pool ? "pool eval" : "direct eval"))
        return false;
    }
    return true;
  };
  long long done = 0;
  for (long long b = 0; done < o.iters; ++b) {
    const long long count = std::min(o.block, o.iters - done);
    const bool pool_first = (b % 2) == 0;  // ABBA: P D | D P | P D | ...
    if (!timed_block(pool_first, count) || !timed_block(!pool_first, count))
      return 1;
    done += count;
  }

  const auto st = pool.stats();
  const std::string version = direct->python_version();
  if (!stop(prog, *direct))
    return 1;
  if (auto s = pool.stop(); !s) {
    std::fprintf(stderr, "%s: pool stop failed: %s\n", prog, s.error().to_string().c_str());
    return 1;
  }

  std::string served = "[";
  for (const auto& w : st.per_worker) {
    served += served.size() > 1 ? "," : "";
    served += std::to_string(w.served);
  }
  served += "]";

  auto ps = summarize(pool_us);
  auto ds = summarize(direct_us);
  json_object j;
  j.str("bench", "pool")
    .str("python", o.c.python)
    .str("python_version", version)
    .boolean("eager_tasks", io.eager_tasks)
    .integer("workers", o.workers)
    .integer("threads", o.threads)
    .integer("duration_ms", o.duration_ms)
    .integer("iters", o.iters)
    .integer("block", o.block)
    .num("pool_spawn_ms", us_since(p0, p1) / 1e3)
    .integer("pool_calls", tp.calls)
    .num("pool_seconds", tp.seconds, 4)
    .num("pool_throughput_per_s", tp.per_s, 1)
    .num("pool_call_p50_us", tp.call.p50)
    .num("pool_call_p99_us", tp.call.p99);
  if (o.direct_throughput) {
    j.integer("direct_calls", dtp.calls)
      .num("direct_seconds", dtp.seconds, 4)
      .num("direct_throughput_per_s", dtp.per_s, 1)
      .num("direct_call_p50_us", dtp.call.p50)
      .num("direct_call_p99_us", dtp.call.p99);
  }
  j.num("pool_eval_p50_us", ps.p50)
    .num("pool_eval_p99_us", ps.p99)
    .num("pool_eval_mean_us", ps.mean)
    .num("direct_eval_p50_us", ds.p50)
    .num("direct_eval_p99_us", ds.p99)
    .num("direct_eval_mean_us", ds.mean)
    .num("pool_eval_to_direct_p50", ps.p50 / ds.p50)
    .integer("pool_served", static_cast<long long>(st.served))
    .raw("pool_served_per_worker", served)
    .integer("pool_restarts", static_cast<long long>(st.restarts))
    .print();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  return bench_main(
    prog, argc, argv, o.c,
    {{"--workers", &o.workers},
     {"--threads", &o.threads},
     {"--duration-ms", &o.duration_ms, 1000, 5000},
     {"--warmup-ms", &o.warmup_ms, 200, 1000, 0},
     {"--iters", &o.iters, 5000, 20000},
     {"--warmup", &o.warmup, 500, 2000, 0},
     {"--block", &o.block}},
    usage, [&] { return run(o); },
    [&](cli& a) {
      if (!a.is("--no-direct-throughput"))
        return false;
      o.direct_throughput = false;
      return true;
    });
}
