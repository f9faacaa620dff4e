// A pool of Python workers: dispatch, key affinity, an env pinned to its worker, a crash the
// pool rides out, recycling, and stats. Build: cmake --build build --target pool; run:
// build/examples/pool
#include <csignal>
#include <iostream>
#include <thread>
#include <vector>

#include "pyvisor/runtime.hpp"

int main() {
  using namespace std::chrono_literals;
  pyvisor::runtime rt;

  pyvisor::pool_options opts;
  opts.name = "demo";
  opts.workers = 3;
  opts.worker.init_script.code = "import os\ndef square(x):\n    return x * x\n";
  opts.recycle.max_requests = 200;        // a fresh process after ~200 requests...
  opts.recycle.max_requests_jitter = 50;  // ...give or take 50, so they do not recycle together
  opts.limits.soft = 2s;                  // a request running 2 s is interrupted
  opts.limits.hard = 5s;                  // and its worker killed at 5 s
  auto pool = rt.spawn_pool(opts);
  if (!pool) {
    std::cerr << "spawn_pool: " << pool.error().to_string() << "\n";
    return 1;
  }
  pool->subscribe([](const pyvisor::pool_event& e) { std::cout << "event: " << e.to_string() << "\n"; });

  // The same calls as a single interpreter.
  std::cout << "square(7) = " << pool->call("square", {7})->to<long long>().value() << "\n";

  // Many callers at once: least_loaded spreads them over the workers.
  std::vector<std::thread> callers;
  for (int t = 0; t < 8; ++t)
    callers.emplace_back([&] {
      for (int i = 0; i < 50; ++i)
        (void)pool->eval("return os.getpid()");
    });
  for (auto& t : callers)
    t.join();

  // Key affinity: the same key lands on the same live worker.
  pyvisor::eval_options by_user;
  by_user.key = "user-42";
  auto a = pool->eval("return os.getpid()", {}, by_user);
  auto b = pool->eval("return os.getpid()", {}, by_user);
  std::cout << "user-42 on pid " << a->to<long long>().value() << " and again on "
            << b->to<long long>().value() << "\n";

  // An env lives on one worker; its requests go there.
  auto env = pool->make_env({.vars = {{"counter", 0}}});
  (void)env->eval("counter += 1");
  std::cout << "counter = " << env->eval("return counter")->to<long long>().value() << "\n";

  // A worker crash fails only its own requests; the pool keeps serving and replaces it.
  auto crash = pool->eval("os.kill(os.getpid(), 9)");
  std::cout << "crashing request: " << crash.error().to_string() << "\n";
  std::cout << "next request: " << pool->eval("return 1 + 1")->to<long long>().value() << "\n";
  pool->wait_ready(3, 10s);

  auto st = pool->stats();
  std::cout << "workers " << st.workers << ", ready " << st.ready << ", served " << st.served
            << ", restarts " << st.restarts << ", p50 " << st.latency.p50.count() << " us\n";
  for (auto& w : st.per_worker)
    std::cout << "  " << w.id << " pid " << w.pid << " " << pyvisor::to_string(w.state) << " served "
              << w.served << " rss " << (w.rss_bytes >> 20) << " MiB\n";
  return pool->stop() ? 0 : 1;
}
