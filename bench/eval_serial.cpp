// pyvisor's own serial eval round trip (see bench/README.md).
//
// From a plain C++ thread (not an actor) through the blocking facade:
//   pyvisor::runtime rt;
//   auto py = rt.spawn_interpreter({.python = "/usr/bin/python3"});
//   py->eval("return 1");
// `--warmup` untimed then `--iters` timed calls, std::chrono::steady_clock around each one; every
// reply is checked to be the integer 1. Also reports the spawn_interpreter() time (spawn to the
// init script finishing, sync_start). Prints exactly one JSON object on stdout; errors go to
// stderr with exit code 1.
//
// Comparable floors: bench_c_pipe (C<->C pipe ping-pong) and py_floor.py --variant msgpack_eval
// (Python<->Python msgpack frames + eval("1+1")). bench/run computes the ratios per run.

#include <algorithm>
#include <chrono>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <numeric>
#include <string>
#include <string_view>
#include <vector>

#include "pyvisor/interpreter.hpp"
#include "pyvisor/runtime.hpp"

#include "bench_common.hpp"

namespace {

// Shared with the other benchmarks (bench_common.hpp).
using pyvisor_bench::clock_type;
using pyvisor_bench::json_str;
using pyvisor_bench::percentile;
using pyvisor_bench::us_since;

struct options {
  long iters = -1;
  long warmup = -1;
  bool quick = false;
  std::string python = "/usr/bin/python3";
  std::string code = "return 1";
  std::string runner_dir;
  int eager_tasks = -1;  // -1: the library's default, else 0/1
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_eval_serial [--iters N] [--warmup N] [--quick] [--python PATH]\n"
               "                         [--code CODE] [--runner-dir DIR] [--eager-tasks on|off]\n"
               "  defaults: --iters 20000 --warmup 2000 --python /usr/bin/python3\n"
               "            --code 'return 1' (the reply must be the integer 1)\n"
               "  --quick:  --iters 5000 --warmup 500\n"
               "  Prints one JSON object.\n");
}

long parse_count(const char* opt, const char* s) {
  char* end = nullptr;
  errno = 0;
  long v = std::strtol(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v < 0) {
    std::fprintf(stderr, "bench_eval_serial: bad value for %s: %s\n", opt, s);
    std::exit(2);
  }
  return v;
}

// Whether an eval result is good: no error and, for the default code, the integer 1. Prints why
// not to stderr.
bool check(const pyvisor::expected<pyvisor::value>& r, const options& o, long i) {
  if (!r) {
    std::fprintf(stderr, "bench_eval_serial: eval #%ld failed: %s\n", i,
                 r.error().to_string().c_str());
    return false;
  }
  if (o.code == "return 1") {
    auto v = r->to<long>();
    if (!v || *v != 1) {
      std::fprintf(stderr, "bench_eval_serial: eval #%ld returned a %s, not 1\n", i,
                   r->type_name());
      return false;
    }
  }
  return true;
}

int run(const options& o) {
  pyvisor::runtime rt;

  // Same as `{.python = o.python}`, spelled so that gcc's -Wextra does not warn about the
  // fields left to their defaults (-Wmissing-field-initializers).
  pyvisor::interpreter_options io;
  io.python = o.python;
  if (!o.runner_dir.empty()) io.runner_dir = o.runner_dir;
  if (o.eager_tasks >= 0) io.eager_tasks = o.eager_tasks == 1;
  const bool eager_tasks = io.eager_tasks;

  const auto s0 = clock_type::now();
  auto spawned = rt.spawn_interpreter(std::move(io));
  const auto s1 = clock_type::now();
  if (!spawned) {
    std::fprintf(stderr, "bench_eval_serial: spawn_interpreter(%s) failed: %s\n",
                 o.python.c_str(), spawned.error().to_string().c_str());
    return 1;
  }
  pyvisor::interpreter py = std::move(*spawned);

  for (long i = 0; i < o.warmup; ++i) {
    if (!check(py.eval(o.code), o, i)) return 1;
  }

  std::vector<double> samples(static_cast<std::size_t>(o.iters));
  const auto t_start = clock_type::now();
  for (long k = 0; k < o.iters; ++k) {
    const auto t0 = clock_type::now();
    auto r = py.eval(o.code);
    const auto t1 = clock_type::now();
    samples[static_cast<std::size_t>(k)] = us_since(t0, t1);
    // Checked outside the timed window (conversion included, so a wrong reply cannot hide).
    if (!check(r, o, o.warmup + k)) return 1;
  }
  const double total_us = us_since(t_start, clock_type::now());

  const std::string version = py.python_version();
  if (auto st = py.stop(); !st) {
    std::fprintf(stderr, "bench_eval_serial: stop failed: %s\n", st.error().to_string().c_str());
    return 1;
  }

  const double mean = std::accumulate(samples.begin(), samples.end(), 0.0) /
                      static_cast<double>(samples.size());
  std::sort(samples.begin(), samples.end());
  std::printf("{\"bench\":\"eval_serial\",\"code\":%s,\"python\":%s,\"python_version\":%s,"
              "\"iters\":%ld,\"warmup\":%ld,\"p50_us\":%.3f,\"p99_us\":%.3f,\"mean_us\":%.3f,"
              "\"min_us\":%.3f,\"max_us\":%.3f,\"rate_rt_s\":%.1f,\"spawn_ms\":%.3f,"
              "\"eager_tasks\":%s}\n",
              json_str(o.code).c_str(), json_str(o.python).c_str(), json_str(version).c_str(),
              o.iters, o.warmup, percentile(samples, 0.50), percentile(samples, 0.99), mean,
              samples.front(), samples.back(),
              static_cast<double>(o.iters) / (total_us / 1e6), us_since(s0, s1) / 1e3,
              eager_tasks ? "true" : "false");
  std::fflush(stdout);
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    const char* a = argv[i];
    const char* v = (i + 1 < argc) ? argv[i + 1] : nullptr;
    auto need = [&]() -> const char* {
      if (v == nullptr) {
        std::fprintf(stderr, "bench_eval_serial: %s needs a value\n", a);
        std::exit(2);
      }
      ++i;
      return v;
    };
    if (!std::strcmp(a, "--quick")) {
      o.quick = true;
    } else if (!std::strcmp(a, "--iters")) {
      o.iters = parse_count(a, need());
    } else if (!std::strcmp(a, "--warmup")) {
      o.warmup = parse_count(a, need());
    } else if (!std::strcmp(a, "--python")) {
      o.python = need();
    } else if (!std::strcmp(a, "--code")) {
      o.code = need();
    } else if (!std::strcmp(a, "--runner-dir")) {
      o.runner_dir = need();
    } else if (!std::strcmp(a, "--eager-tasks")) {
      const std::string_view e = need();
      if (e != "on" && e != "off") {
        std::fprintf(stderr, "bench_eval_serial: --eager-tasks takes on or off\n");
        return 2;
      }
      o.eager_tasks = e == "on" ? 1 : 0;
    } else if (!std::strcmp(a, "-h") || !std::strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (o.iters < 0) o.iters = o.quick ? 5000 : 20000;
  if (o.warmup < 0) o.warmup = o.quick ? 500 : 2000;
  if (o.iters < 1) {
    std::fprintf(stderr, "bench_eval_serial: --iters must be >= 1\n");
    return 2;
  }
  try {
    return run(o);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_eval_serial: exception: %s\n", e.what());
    return 1;
  }
}
