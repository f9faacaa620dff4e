// Pipelined eval throughput on one interpreter (see bench/README.md).
//
// For each depth D in --inflight (default 1,16,256): D calls of
//   py.eval_async("return 1", {}, {}, done)
// are started, and every `done` callback (on pyvisor's I/O thread) checks its reply is the
// integer 1 and starts the next call, so D requests stay in flight until --count replies have
// arrived. Time from the first call to the last reply gives evals/s. Each depth first runs
// --warmup untimed replies at the same depth. --eager-tasks on|off sets
// interpreter_options::eager_tasks so both settings can be compared. Prints one JSON object
// with `evals_s_<D>` per depth.
//
// Comparable floor: py_floor.py --variant msgpack_pipelined (same depths, Python<->Python).

#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <exception>
#include <mutex>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_pipelined";

struct options {
  common_options c;
  std::vector<long long> inflight{1, 16, 256};
  long long count = -1;
  long long warmup = -1;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_pipelined [--inflight D,D,...] [--count N] [--warmup N] <common>\n"
               "  defaults: --inflight 1,16,256 --count 100000 (replies per depth)\n"
               "            --warmup count/10 (per depth)\n"
               "  --quick:  --count 20000\n"
               "%s  Prints one JSON object.\n",
               common_usage);
}

// Keeps `depth` evals in flight until `total` replies arrived.
class pump {
public:
  pump(pyvisor::interpreter& py, long long total) : py_(py), total_(total) {}

  // Returns the seconds from the first call to the last reply, or a negative number on error.
  double run(long long depth) {
    const long long first = std::min(depth, total_);
    submitted_ = first;
    outstanding_ = 1;  // held while the first calls go out, so an early failure cannot finish
    const auto t0 = clock_type::now();
    for (long long i = 0; i < first; ++i)
      submit();
    release();
    std::unique_lock<std::mutex> lk{mu_};
    cv_.wait(lk, [&] { return finished_; });
    if (!error_.empty()) {
      std::fprintf(stderr, "%s: %s\n", prog, error_.c_str());
      return -1;
    }
    if (completed_.load() != total_) {
      std::fprintf(stderr, "%s: %lld of %lld replies arrived\n", prog, completed_.load(), total_);
      return -1;
    }
    return std::chrono::duration<double>(t_end_ - t0).count();
  }

private:
  void submit() {
    outstanding_.fetch_add(1);
    py_.eval_async("return 1", {}, {},
                   [this](pyvisor::expected<pyvisor::value> r) { on_reply(std::move(r)); });
  }

  void on_reply(pyvisor::expected<pyvisor::value> r) {
    if (!r) {
      fail("eval failed: " + r.error().to_string());
    } else if (auto v = r->to<long>(); !v || *v != 1) {
      fail(std::string{"eval returned a "} + r->type_name() + ", not 1");
    } else {
      completed_.fetch_add(1, std::memory_order_relaxed);
      if (!failed_.load(std::memory_order_relaxed) && submitted_.fetch_add(1) < total_)
        submit();  // counted as outstanding before this reply stops being outstanding
    }
    release();
  }

  // One outstanding request (or the starter's token) is done; the last one finishes the run.
  void release() {
    if (outstanding_.fetch_sub(1) == 1) {
      auto t = clock_type::now();
      std::lock_guard<std::mutex> g{mu_};
      t_end_ = t;
      finished_ = true;
      cv_.notify_all();
    }
  }

  void fail(std::string why) {
    std::lock_guard<std::mutex> g{mu_};
    if (error_.empty())
      error_ = std::move(why);
    failed_ = true;
  }

  pyvisor::interpreter& py_;
  const long long total_;
  std::atomic<long long> submitted_{0};
  std::atomic<long long> completed_{0};
  std::atomic<long long> outstanding_{0};
  std::atomic<bool> failed_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool finished_ = false;
  std::string error_;
  clock_type::time_point t_end_;
};

int run(const options& o) {
  pyvisor::runtime rt;
  auto io = interpreter_opts(o.c);
  auto spawned = spawn(prog, rt, io);
  if (!spawned)
    return 1;
  pyvisor::interpreter& py = *spawned;

  json_object j;
  describe(j, "pipelined", o.c, io, py);
  j.integer("count", o.count).integer("warmup", o.warmup);
  std::string depths = "[";
  for (long long d : o.inflight) {
    if (o.warmup > 0) {
      pump w{py, o.warmup};
      if (w.run(d) < 0)
        return 1;
    }
    pump p{py, o.count};
    const double secs = p.run(d);
    if (secs < 0)
      return 1;
    const auto ds = std::to_string(d);
    if (depths.size() > 1)
      depths += ',';
    depths += ds;
    j.num("secs_" + ds, secs, 4).num("evals_s_" + ds, static_cast<double>(o.count) / secs, 1);
  }
  const auto st = py.stats();
  j.raw("inflight", depths + "]")
    .integer("busy_transitions", static_cast<long long>(st.busy_transitions))
    .integer("overloaded", static_cast<long long>(st.overloaded));
  if (!stop(prog, py))
    return 1;
  j.print();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  return bench_main(
    prog, argc, argv, o.c,
    {{"--count", &o.count, 20000, 100000}, {"--warmup", &o.warmup, -1, -1, -1}}, usage,
    [&] {
      if (o.warmup < 0)
        o.warmup = o.count / 10;
      if (o.inflight.empty() ||
          std::any_of(o.inflight.begin(), o.inflight.end(), [](long long d) { return d < 1; })) {
        std::fprintf(stderr, "%s: every --inflight depth must be >= 1\n", prog);
        return 2;
      }
      return run(o);
    },
    [&](cli& a) {
      if (!a.is("--inflight"))
        return false;
      o.inflight = a.counts();
      return true;
    });
}
