// The daemon's HTTP gateway (issue 11) against the in-process pool it serves, in the same run:
//
//   pool     = rt.spawn_pool({.workers = 2, .worker = <common options>})
//   gateway  = the daemon's http_gateway on 127.0.0.1:<free port>, serving `pool`
//
// - serial p50/p99: `pool.eval("return 1")` from one thread, and POST /v1/pools/bench/eval
//   {"code": "return 1"} over one keep-alive connection (cpp-httplib's client, as a client in
//   another language would send it): the difference is what the gateway adds;
// - throughput: C callers (8 and 64) looping for --duration-ms, each either calling pool.eval
//   in-process or with its own keep-alive HTTP connection.
// Prints one JSON object.

#include <httplib.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "bench_common.hpp"
#include "gateway/http_gateway.hpp"
#include "pyvisor/pool.hpp"
#include "pyvisor/pool_options.hpp"
#include "pyvisor/runtime.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_gateway";
constexpr const char* body = R"({"code":"return 1"})";

struct options {
  common_options c;
  long long iters = -1;
  long long duration_ms = -1;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_gateway [--iters N] [--duration-ms N] <common>\n"
               "  defaults: --iters 5000 serial evals, --duration-ms 3000 per throughput run\n"
               "            (--quick: 500, 500)\n"
               "%s  Prints one JSON object.\n",
               common_usage);
}

bool http_eval(httplib::Client& cli) {
  auto r = cli.Post("/v1/pools/bench/eval", body, "application/json");
  if (r && r->status == 200 && r->body == "{\"value\":1}\n")
    return true;
  static std::atomic<int> reported{0};
  if (reported.fetch_add(1) < 3)
    std::fprintf(stderr, "%s: eval over HTTP failed: %s\n", prog,
                 r ? (std::to_string(r->status) + " " + r->body).c_str()
                   : httplib::to_string(r.error()).c_str());
  return false;
}

/// Calls per second of `threads` callers each running their own `make()` in a loop: counted
/// over `d` after a warm-up of d/4.
template <class MakeCaller>
double throughput(int threads, std::chrono::milliseconds d, MakeCaller make, long long& failures) {
  std::atomic<bool> stop{false};
  std::atomic<long long> calls{0}, failed{0};
  std::vector<std::thread> ts;
  for (int i = 0; i < threads; ++i)
    ts.emplace_back([&] {
      auto call = make();
      while (!stop.load(std::memory_order_relaxed)) {
        if (call())
          calls.fetch_add(1, std::memory_order_relaxed);
        else
          failed.fetch_add(1, std::memory_order_relaxed);
      }
    });
  std::this_thread::sleep_for(d / 4);
  const long long c0 = calls.load();
  const auto t0 = clock_type::now();
  std::this_thread::sleep_for(d);
  const long long c1 = calls.load();
  const auto t1 = clock_type::now();
  stop = true;
  for (auto& t : ts)
    t.join();
  failures += failed.load();
  return static_cast<double>(c1 - c0) / std::chrono::duration<double>(t1 - t0).count();
}

int run(const options& o) {
  pyvisor::runtime rt{pyvisor::runtime_options{.log = {}}};
  pyvisor::pool_options po;
  po.name = "bench";
  po.workers = 2;
  po.worker = interpreter_opts(o.c);
  auto spawned = rt.spawn_pool(po);
  if (!spawned) {
    std::fprintf(stderr, "%s: spawn_pool failed: %s\n", prog, spawned.error().to_string().c_str());
    return 1;
  }
  pyvisor::pool pool = *spawned;
  if (!pool.wait_ready(2)) {
    std::fprintf(stderr, "%s: the pool's workers did not start\n", prog);
    return 1;
  }
  auto routes = std::make_shared<pyvisor::gateway::pool_routes>();
  routes->emplace("bench", pyvisor::gateway::pool_route{"bench", "", "bench", pool, 1});
  pyvisor::gateway::gateway_hooks hooks;
  hooks.routes = [routes] { return std::shared_ptr<const pyvisor::gateway::pool_routes>(routes); };
  pyvisor::gateway_settings gs;
  gs.max_connections = 256;
  pyvisor::listen_address la{"127.0.0.1", 0};
  auto gw = pyvisor::gateway::http_gateway::start(la, gs, hooks);
  if (!gw) {
    std::fprintf(stderr, "%s: gateway failed: %s\n", prog, gw.error().to_string().c_str());
    return 1;
  }
  (*gw)->serve();
  const int port = (*gw)->port();

  // Serial, interleaved in blocks so that drift on a noisy machine hits both alike.
  std::vector<double> in_proc, over_http;
  httplib::Client cli{"127.0.0.1", port};
  cli.set_keep_alive(true);
  cli.set_tcp_nodelay(true);  // headers and body are two writes: no Nagle wait between them
  for (int i = 0; i < 200; ++i) {  // warm-up
    (void)pool.eval("return 1");
    (void)http_eval(cli);
  }
  for (long long done = 0; done < o.iters; done += 100) {
    for (int k = 0; k < 100; ++k) {
      const auto t0 = clock_type::now();
      if (!pool.eval("return 1"))
        return std::fprintf(stderr, "%s: pool eval failed\n", prog), 1;
      in_proc.push_back(us_since(t0, clock_type::now()));
    }
    for (int k = 0; k < 100; ++k) {
      const auto t0 = clock_type::now();
      if (!http_eval(cli))
        return std::fprintf(stderr, "%s: gateway eval failed\n", prog), 1;
      over_http.push_back(us_since(t0, clock_type::now()));
    }
  }
  auto sp = summarize(in_proc);
  auto sh = summarize(over_http);

  const std::chrono::milliseconds d{o.duration_ms};
  long long failures = 0;
  json_object j;
  j.str("bench", "gateway").str("python", o.c.python).integer("iters", o.iters)
    .integer("duration_ms", o.duration_ms).integer("workers", 2)
    .num("pool_eval_p50_us", sp.p50).num("pool_eval_p99_us", sp.p99)
    .num("gateway_eval_p50_us", sh.p50).num("gateway_eval_p99_us", sh.p99)
    .num("gateway_added_p50_us", sh.p50 - sp.p50);
  for (int threads : {8, 64}) {
    const double pool_rate = throughput(threads, d, [&] {
      return [&pool] { return static_cast<bool>(pool.eval("return 1")); };
    }, failures);
    const double http_rate = throughput(threads, d, [port] {
      auto c = std::make_shared<httplib::Client>("127.0.0.1", port);
      c->set_keep_alive(true);
      c->set_tcp_nodelay(true);
      c->set_read_timeout(60, 0);
      return [c] { return http_eval(*c); };
    }, failures);
    const std::string t = std::to_string(threads);
    j.num("pool_" + t + "callers_per_s", pool_rate).num("gateway_" + t + "clients_per_s", http_rate);
  }
  j.integer("failures", failures);
  (*gw)->stop();
  (void)pool.stop();
  j.print();
  return failures == 0 ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  return bench_main(prog, argc, argv, o.c,
                    {{"--iters", &o.iters, 500, 5000, 100},
                     {"--duration-ms", &o.duration_ms, 500, 3000, 100}},
                    usage, [&] { return run(o); });
}
