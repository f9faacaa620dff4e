// Restart under a live handle (issue 8): a supervised interpreter's process is SIGKILLed and the
// same handle is asked to eval until it answers; the time from the kill to that first success
// is the restart latency callers see (cold spawn of a new Python process, runner start-up,
// init script, admission). Reported beside the spawn-to-ready time of a fresh interpreter
// measured in the same run (the floor a restart cannot beat). Backoff is off (0 ms) so the
// figure is the mechanism, not the policy. The same again with spawn_mode::fork_server (fork_*:
// a fork of the warm template instead of a new Python). Prints one JSON object.

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <string>
#include <vector>

#include "pyvisor/runtime.hpp"
#include "pyvisor/supervisor.hpp"

#include "bench_common.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_restart";

struct options {
  common_options c;
  long long iters = -1;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_restart [--iters N] <common>\n"
               "  defaults: --iters 50 (--quick: 15)\n"
               "%s  Prints one JSON object.\n",
               common_usage);
}

struct figures {
  std::vector<double> spawn_us, restart_us;
  long long failed_calls = 0;
  long long restarts = 0;
};

// The spawn floor and the restart latency for one way of starting processes.
bool measure(const options& o, pyvisor::runtime& rt, const pyvisor::interpreter_options& io,
             figures& f) {
  // The floor: spawn_interpreter() to ready, fresh each time.
  for (long long i = 0; i < o.iters; ++i) {
    const auto t0 = clock_type::now();
    auto py = spawn(prog, rt, io);
    const auto t1 = clock_type::now();
    if (!py)
      return false;
    f.spawn_us.push_back(us_since(t0, t1));
    if (!stop(prog, *py))
      return false;
  }

  pyvisor::supervisor_spec spec;
  spec.name = "bench";
  spec.intensity = static_cast<int>(o.iters) + 10;
  spec.period = std::chrono::seconds{60};
  spec.backoff = {std::chrono::milliseconds{0}, std::chrono::milliseconds{0}, 0.0,
                  std::chrono::milliseconds{0}};
  pyvisor::child_spec child;
  child.id = "py";
  child.interpreter = io;
  spec.children.push_back(child);
  auto sup = rt.supervise(spec);
  if (!sup) {
    std::fprintf(stderr, "%s: supervise failed: %s\n", prog, sup.error().to_string().c_str());
    return false;
  }
  auto py = sup->child("py");
  if (!py)
    return false;
  for (long long i = 0; i < o.iters; ++i) {
    auto ok = py->eval("return 1");
    if (!ok) {
      std::fprintf(stderr, "%s: eval before the kill failed: %s\n", prog,
                   ok.error().to_string().c_str());
      return false;
    }
    const int pid = py->os_pid();
    const auto t0 = clock_type::now();
    ::kill(pid, SIGKILL);
    for (;;) {
      auto r = py->eval("return 1");
      if (r && py->os_pid() != pid)
        break;
      ++f.failed_calls;  // in flight at the kill: interpreter_exited, once
      if (!r && r.error().code != pyvisor::errc::interpreter_exited) {
        std::fprintf(stderr, "%s: unexpected error: %s\n", prog, r.error().to_string().c_str());
        return false;
      }
    }
    f.restart_us.push_back(us_since(t0, clock_type::now()));
  }
  f.restarts = static_cast<long long>(py->stats().restarts);
  return static_cast<bool>(sup->stop());
}

int run(const options& o) {
  pyvisor::runtime rt{pyvisor::runtime_options{.log = {}}};
  auto io = interpreter_opts(o.c);
  figures cold, forked;
  if (!measure(o, rt, io, cold))
    return 1;
  // The fork server: a warm template forks each process (its own start is not counted: the
  // first spawn below starts it, and the floor's median ignores one slow sample).
  auto fio = io;
  fio.spawn = pyvisor::spawn_mode::fork_server;
  if (!measure(o, rt, fio, forked))
    return 1;
  auto s = summarize(cold.spawn_us);
  auto r = summarize(cold.restart_us);
  auto fs = summarize(forked.spawn_us);
  auto fr = summarize(forked.restart_us);
  json_object j;
  j.str("bench", "restart")
    .str("python", o.c.python)
    .integer("iters", o.iters)
    .integer("restarts", cold.restarts + forked.restarts)
    .integer("calls_failed_at_kill", cold.failed_calls + forked.failed_calls)
    .num("spawn_p50_ms", s.p50 / 1e3)
    .num("spawn_p99_ms", s.p99 / 1e3)
    .num("restart_p50_ms", r.p50 / 1e3)
    .num("restart_p99_ms", r.p99 / 1e3)
    .num("restart_to_spawn_p50", r.p50 / s.p50)
    .num("fork_spawn_p50_ms", fs.p50 / 1e3)
    .num("fork_spawn_p99_ms", fs.p99 / 1e3)
    .num("fork_restart_p50_ms", fr.p50 / 1e3)
    .num("fork_restart_p99_ms", fr.p99 / 1e3)
    .print();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  return bench_main(prog, argc, argv, o.c, {{"--iters", &o.iters, 15, 50}}, usage,
                    [&] { return run(o); });
}
