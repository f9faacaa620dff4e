// Pools against real Python processes (issue 9): dispatch and affinity, crashes under load,
// the heartbeat watchdog, recycling by requests and by RSS, soft and hard time limits, the
// start circuit breaker, autoscaling, the queue's bounds, envs pinned to workers, and the
// actor interface. Every test ends with the fixture's leak audit (no child, no fd left).

#include <gtest/gtest.h>

#include <atomic>
#include <csignal>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include <caf/all.hpp>

#include "pyvisor/actor_interface.hpp"
#include "pyvisor/pool.hpp"
#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::pool_stats)

namespace {

class pool_test : public runtime_test {
protected:
  pool_options pool_opts(std::size_t n) {
    pool_options o;
    o.name = "t";
    o.workers = n;
    o.worker = options();
    o.worker.init_script.code = "import os, time";
    o.backoff.base = 10ms;  // restarts quickly: the tests count them, not their pacing
    return o;
  }

  pool must_pool(pool_options o) {
    auto p = rt_->spawn_pool(std::move(o));
    if (!p)
      throw std::runtime_error("spawn_pool failed: " + p.error().to_string());
    for (auto& w : p->stats().per_worker)
      track_pid(w.pid);
    return *p;
  }

  static long long pid_of(const expected<value>& v) { return v->to<long long>().value(); }

  static std::set<int> ready_pids(const pool& p) {
    std::set<int> out;
    for (auto& w : p.stats().per_worker)
      if (w.state == worker_stats::ready && w.pid != 0)
        out.insert(w.pid);
    return out;
  }
};

TEST_F(pool_test, serves_like_an_interpreter_and_spreads_load) {
  auto p = must_pool(pool_opts(3));
  auto r = p.call("math.hypot", {3, 4});
  ASSERT_TRUE(r) << r.error();
  EXPECT_DOUBLE_EQ(r->to<double>().value(), 5.0);
  auto e = p.eval("raise ValueError('nope')");
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, errc::python_exception);
  EXPECT_EQ(e.error().python_type, "ValueError");
  // Concurrent callers: every worker gets some.
  std::mutex mu;
  std::map<long long, int> per_pid;
  std::vector<std::thread> ts;
  for (int t = 0; t < 6; ++t)
    ts.emplace_back([&] {
      for (int i = 0; i < 20; ++i) {
        auto v = p.eval("time.sleep(0.002)\nreturn os.getpid()");
        ASSERT_TRUE(v) << v.error();
        std::lock_guard<std::mutex> g{mu};
        ++per_pid[pid_of(v)];
      }
    });
  for (auto& t : ts)
    t.join();
  EXPECT_EQ(per_pid.size(), 3u);
  auto st = p.stats();
  EXPECT_EQ(st.workers, 3u);
  EXPECT_EQ(st.ready, 3u);
  EXPECT_GE(st.served, 122u);
  EXPECT_GT(st.latency.p50.count(), 0);
  EXPECT_LE(st.latency.p50, st.latency.p99);
  ASSERT_EQ(st.errors.size(), 1u);
  EXPECT_EQ(st.errors[0].first, errc::python_exception);
  EXPECT_EQ(st.errors[0].second, 1u);
  std::uint64_t worker_errors = 0;
  for (auto& w : st.per_worker)
    for (auto& [code, n] : w.errors_by_code) {
      EXPECT_EQ(code, errc::python_exception);
      worker_errors += n;
    }
  EXPECT_EQ(worker_errors, 1u);
  ASSERT_TRUE(p.stop());
}

TEST_F(pool_test, round_robin_takes_turns) {
  auto o = pool_opts(3);
  o.dispatch = dispatch_policy::round_robin;
  auto p = must_pool(o);
  std::vector<long long> seen;
  for (int i = 0; i < 6; ++i)
    seen.push_back(pid_of(p.eval("return os.getpid()")));
  std::set<long long> first{seen.begin(), seen.begin() + 3};
  EXPECT_EQ(first.size(), 3u);
  for (int i = 0; i < 3; ++i)
    EXPECT_EQ(seen[static_cast<std::size_t>(i)], seen[static_cast<std::size_t>(i) + 3]);
}

TEST_F(pool_test, survives_a_worker_killed_every_100ms_under_load) {
  auto o = pool_opts(4);
  o.backoff.base = 1ms;
  o.backoff.cap = 5ms;
  auto p = must_pool(o);
  std::atomic<int> values{0}, exited{0}, other{0}, answers{0};
  std::vector<std::string> odd;
  std::mutex odd_mu;
  std::atomic<bool> calls_done{false};
  std::vector<std::thread> callers;
  for (int t = 0; t < 16; ++t)
    callers.emplace_back([&, t] {
      for (int i = 0; i < 1000 / 16 + (t < 1000 % 16 ? 1 : 0); ++i) {
        auto v = p.eval("time.sleep(0.02)\nreturn 1");
        ++answers;
        if (v)
          ++values;
        else if (v.error().code == errc::interpreter_exited)
          ++exited;
        else {
          ++other;
          std::lock_guard<std::mutex> g{odd_mu};
          odd.push_back(v.error().to_string());
        }
      }
    });
  // Kill a random ready worker every 100 ms for 3 s.
  std::mt19937 rng{42};
  int kills = 0;
  auto until = std::chrono::steady_clock::now() + 3s;
  while (std::chrono::steady_clock::now() < until) {
    auto pids = ready_pids(p);
    if (!pids.empty()) {
      auto it = pids.begin();
      std::advance(it, static_cast<long>(rng() % pids.size()));
      track_pid(*it);
      if (::kill(*it, SIGKILL) == 0)
        ++kills;
      // Wait until the pool saw that exit, so the next kill is a different process.
      int victim = *it;
      ASSERT_TRUE(eventually([&] { return ready_pids(p).count(victim) == 0; }));
    }
    std::this_thread::sleep_for(100ms);  // the pacing of the chaos, not a wait for a condition
  }
  for (auto& t : callers)
    t.join();
  calls_done = true;
  EXPECT_EQ(answers.load(), 1000);
  EXPECT_EQ(values + exited, 1000) << "unexpected errors, e.g. " << (odd.empty() ? "" : odd[0]);
  EXPECT_GT(values.load(), 0);
  EXPECT_GE(kills, 20);
  ASSERT_TRUE(p.wait_ready(4, scaled(20s)));
  auto st = p.stats();
  EXPECT_EQ(st.workers, 4u);
  EXPECT_EQ(st.restarts, static_cast<std::uint64_t>(kills));
  for (auto& w : st.per_worker)
    track_pid(w.pid);
  // And it still serves.
  auto r = p.eval("return 'fine'");
  ASSERT_TRUE(r) << r.error();
}

TEST_F(pool_test, a_sigstopped_worker_is_replaced_by_the_watchdog) {
  auto o = pool_opts(2);
  o.heartbeat = {200ms, 1000ms};
  auto p = must_pool(o);
  auto pids = ready_pids(p);
  ASSERT_EQ(pids.size(), 2u);
  int victim = *pids.begin();
  auto start = std::chrono::steady_clock::now();
  ASSERT_EQ(::kill(victim, SIGSTOP), 0);
  ASSERT_TRUE(eventually([&] {
    auto now = ready_pids(p);
    return now.size() == 2 && now.count(victim) == 0;
  }, 20s));
  // Within the watchdog bound (timeout + interval), plus a restart, generously scaled.
  EXPECT_LT(std::chrono::steady_clock::now() - start, scaled(8s));
  auto st = p.stats();
  EXPECT_EQ(st.restarts, 1u);
  bool found = false;
  for (auto& w : st.per_worker) {
    track_pid(w.pid);
    if (w.last_exit) {
      found = true;
      EXPECT_EQ(w.last_exit->kind, exit_kind::crash);
      EXPECT_NE(w.last_exit->reason.message.find("heartbeat"), std::string::npos)
        << w.last_exit->reason;
    }
  }
  EXPECT_TRUE(found);
}

TEST_F(pool_test, rss_recycling_replaces_a_fat_worker_without_losing_capacity) {
  auto o = pool_opts(2);
  o.recycle.max_rss_bytes = std::size_t{150} << 20;
  o.recycle.rss_check_interval = 0ms;
  auto p = must_pool(o);
  std::vector<pool_event> events;
  std::mutex ev_mu;
  p.subscribe([&](const pool_event& e) {
    std::lock_guard<std::mutex> g{ev_mu};
    events.push_back(e);
  });
  auto before = ready_pids(p);
  std::atomic<bool> stop_sampling{false};
  std::atomic<std::size_t> min_running{99};
  std::thread sampler([&] {
    while (!stop_sampling) {
      std::size_t running = 0;
      for (auto& w : p.stats().per_worker)
        if ((w.state == worker_stats::ready || w.state == worker_stats::draining) && w.pid != 0)
          ++running;
      if (running < min_running)
        min_running = running;
      std::this_thread::sleep_for(2ms);  // sampling rate
    }
  });
  // Kept alive past the request (builtins), as a leak would be.
  auto fat = p.eval("import builtins\nbuiltins.hog = b'x' * (200 << 20)\nreturn os.getpid()");
  int fat_pid = fat ? static_cast<int>(pid_of(fat)) : 0;
  bool swapped = fat && eventually([&] {
    auto now = ready_pids(p);
    return now.size() == 2 && now.count(fat_pid) == 0 && p.stats().workers == 2;
  }, 20s);
  stop_sampling = true;
  sampler.join();
  ASSERT_TRUE(fat) << fat.error();
  EXPECT_TRUE(before.count(fat_pid));
  ASSERT_TRUE(swapped) << "the fat worker was not replaced";
  EXPECT_GE(min_running.load(), 2u) << "capacity dropped during the swap";
  auto st = p.stats();
  EXPECT_EQ(st.recycled, 1u);
  EXPECT_EQ(st.restarts, 0u);
  for (auto& w : st.per_worker)
    track_pid(w.pid);
  std::lock_guard<std::mutex> g{ev_mu};
  bool recycling = false;
  for (auto& e : events)
    if (e.kind == pool_event::worker_recycling) {
      recycling = true;
      EXPECT_NE(e.reason.find("max_rss_bytes"), std::string::npos) << e.to_string();
    }
  EXPECT_TRUE(recycling);
}

TEST_F(pool_test, request_recycling_with_jitter) {
  auto o = pool_opts(2);
  o.recycle.max_requests = 20;
  o.recycle.max_requests_jitter = 10;
  auto p = must_pool(o);
  std::vector<long long> order;
  for (int i = 0; i < 300; ++i) {
    auto v = p.eval("return os.getpid()");
    ASSERT_TRUE(v) << v.error();
    order.push_back(pid_of(v));
  }
  std::map<long long, int> count;
  for (auto pid : order)
    ++count[pid];
  auto live = ready_pids(p);
  std::set<int> distinct_counts;
  for (auto& [pid, n] : count) {
    if (live.count(static_cast<int>(pid)) != 0)
      continue;  // still serving: not at its limit yet
    EXPECT_GE(n, 20) << "pid " << pid;
    EXPECT_LE(n, 30) << "pid " << pid;
    distinct_counts.insert(n);
  }
  EXPECT_GE(count.size(), 8u);
  EXPECT_GE(distinct_counts.size(), 2u) << "jitter should vary the limits";
  ASSERT_TRUE(eventually([&] { return p.stats().workers == 2; }));
  EXPECT_GE(p.stats().recycled, 8u);
  for (auto& w : p.stats().per_worker)
    track_pid(w.pid);
}

TEST_F(pool_test, an_idle_worker_is_recycled_after_max_idle) {
  auto o = pool_opts(1);
  o.recycle.max_idle = 300ms;
  o.autoscale.check_interval = 50ms;
  auto p = must_pool(o);
  int first = *ready_pids(p).begin();
  ASSERT_TRUE(eventually([&] {
    auto now = ready_pids(p);
    return p.stats().recycled >= 1 && now.size() == 1 && now.count(first) == 0;
  }, 20s));
  auto v = p.eval("return 5");
  ASSERT_TRUE(v) << v.error();
  EXPECT_EQ(p.stats().restarts, 0u);
  for (auto& w : p.stats().per_worker)
    track_pid(w.pid);
}

TEST_F(pool_test, key_affinity_holds_and_a_kill_moves_only_the_dead_workers_keys) {
  auto p = must_pool(pool_opts(4));
  std::map<std::string, long long> owner;
  for (int round = 0; round < 10; ++round)
    for (int k = 0; k < 100; ++k) {
      auto key = "user-" + std::to_string(k);
      auto v = p.eval("return os.getpid()", {}, {.key = key});
      ASSERT_TRUE(v) << v.error();
      auto [it, fresh] = owner.emplace(key, pid_of(v));
      if (!fresh) {
        ASSERT_EQ(it->second, pid_of(v)) << key << " moved without a reason";
      }
    }
  std::set<long long> used;
  for (auto& [k, pid] : owner)
    used.insert(pid);
  EXPECT_EQ(used.size(), 4u) << "100 keys should reach every worker";
  long long dead = owner.begin()->second;
  ASSERT_EQ(::kill(static_cast<int>(dead), SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    auto now = ready_pids(p);
    return now.size() == 4 && now.count(static_cast<int>(dead)) == 0;
  }, 20s));
  for (auto& [key, before] : owner) {
    auto v = p.eval("return os.getpid()", {}, {.key = key});
    ASSERT_TRUE(v) << v.error();
    if (before == dead)
      EXPECT_NE(pid_of(v), dead) << key;
    else
      EXPECT_EQ(pid_of(v), before) << key << " moved although its worker lives";
  }
  for (auto& w : p.stats().per_worker)
    track_pid(w.pid);
}

TEST_F(pool_test, soft_time_limit_interrupts_and_python_cleans_up) {
  auto o = pool_opts(1);
  o.limits.soft = 300ms;
  auto p = must_pool(o);
  auto r = p.eval(
    "import builtins\nbuiltins.cleaned = False\ntry:\n    time.sleep(30)\nexcept KeyboardInterrupt:\n"
    "    builtins.cleaned = True\n    raise",
    {}, {.timeout = 20s});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout) << r.error();
  // Python saw the interrupt (on the same, still running worker).
  ASSERT_TRUE(eventually([&] {
    auto c = p.eval("import builtins\nreturn getattr(builtins, 'cleaned', False)");
    return c && c->to<bool>().value();
  }));
  EXPECT_EQ(p.stats().restarts, 0u);
}

TEST_F(pool_test, hard_time_limit_kills_and_replaces_the_worker) {
  auto o = pool_opts(1);
  o.limits.hard = 400ms;
  auto p = must_pool(o);
  int pid = *ready_pids(p).begin();
  auto start = std::chrono::steady_clock::now();
  auto r = p.eval("while True:\n    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n        pass");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().code == errc::timeout || r.error().code == errc::interpreter_exited) << r.error();
  ASSERT_TRUE(eventually([&] {
    auto now = ready_pids(p);
    return now.size() == 1 && now.count(pid) == 0;
  }, 20s));
  EXPECT_LT(std::chrono::steady_clock::now() - start, scaled(10s));
  EXPECT_EQ(p.stats().restarts, 1u);
  auto ok = p.eval("return 7");
  ASSERT_TRUE(ok) << ok.error();
  for (auto& w : p.stats().per_worker)
    track_pid(w.pid);
}

TEST_F(pool_test, a_broken_init_script_fails_spawn_pool_fast_with_the_traceback) {
  auto o = pool_opts(2);
  o.worker.init_script = {"def setup():\n    raise ValueError('broken config')\nsetup()", {}, "init.py"};
  auto start = std::chrono::steady_clock::now();
  auto p = rt_->spawn_pool(o);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, errc::init_failed) << p.error();
  EXPECT_EQ(p.error().python_type, "ValueError");
  bool has_frame = false;
  for (auto& l : p.error().traceback)
    has_frame = has_frame || l.find("init.py") != std::string::npos;
  EXPECT_TRUE(has_frame) << p.error();
  EXPECT_LT(std::chrono::steady_clock::now() - start, scaled(15s));
}

TEST_F(pool_test, the_breaker_opens_on_a_broken_init_file_and_closes_once_it_is_fixed) {
  auto path = marker("pool-init") + ".py";
  {
    std::ofstream f{path};
    f << "raise RuntimeError('init is broken')\n";
  }
  auto o = pool_opts(2);
  o.worker.init_script.code = "exec(open('" + path + "').read(), globals())";
  o.min_ready = 0;
  o.breaker = {2, 200ms, 400ms};
  auto p = rt_->spawn_pool(o);
  ASSERT_TRUE(p) << p.error();
  ASSERT_TRUE(eventually([&] { return p->stats().breaker_open; }));
  auto r = p->eval("return 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::pool_unavailable) << r.error();
  EXPECT_NE(r.error().message.find("init is broken"), std::string::npos) << r.error();
  {
    // Atomically (a start running now must read the old file or the new one, never half).
    std::ofstream f{path + ".new"};
    f << "fixed = True\n";
  }
  ASSERT_EQ(std::rename((path + ".new").c_str(), path.c_str()), 0);
  std::string last;
  bool fixed = eventually([&] {
    auto v = p->eval("return fixed");
    last = v ? "ok" : v.error().to_string();
    return v && v->to<bool>().value();
  }, 20s);
  if (!fixed)
    for (auto& l : logs())
      if (l.source == log_source::runtime)
        std::cerr << l.line << "\n";
  ASSERT_TRUE(fixed) << last;
  ASSERT_TRUE(p->wait_ready(2, scaled(20s)));
  EXPECT_FALSE(p->stats().breaker_open);
  for (auto& w : p->stats().per_worker)
    track_pid(w.pid);
  std::remove(path.c_str());
}

TEST_F(pool_test, autoscales_up_under_a_burst_and_down_after_idle) {
  auto o = pool_opts(1);
  o.max_inflight_per_worker = 1;
  o.autoscale.min_workers = 1;
  o.autoscale.max_workers = 3;
  o.autoscale.up_window = 100ms;
  o.autoscale.idle_timeout = 500ms;
  o.autoscale.check_interval = 50ms;
  auto p = must_pool(o);
  std::vector<pool_event> events;
  std::mutex ev_mu;
  p.subscribe([&](const pool_event& e) {
    std::lock_guard<std::mutex> g{ev_mu};
    events.push_back(e);
  });
  std::atomic<int> done{0};
  for (int i = 0; i < 30; ++i)
    p.eval_async("time.sleep(0.1)\nreturn 1", {}, {}, [&](expected<value> v) {
      EXPECT_TRUE(v) << v.error();
      ++done;
    });
  ASSERT_TRUE(eventually([&] { return p.stats().workers == 3; }, 20s));
  ASSERT_TRUE(eventually([&] { return done == 30; }, 30s));
  ASSERT_TRUE(eventually([&] { return p.stats().workers == 1; }, 20s));
  std::lock_guard<std::mutex> g{ev_mu};
  int up = 0, down = 0;
  for (auto& e : events) {
    if (e.kind == pool_event::scaled_up) {
      ++up;
      EXPECT_FALSE(e.reason.empty());
    }
    if (e.kind == pool_event::scaled_down) {
      ++down;
      EXPECT_NE(e.reason.find("idle"), std::string::npos) << e.to_string();
    }
  }
  EXPECT_EQ(up, 2);
  EXPECT_EQ(down, 2);
}

TEST_F(pool_test, a_full_queue_is_overloaded_and_a_queue_timeout_is_a_timeout) {
  auto o = pool_opts(1);
  o.max_inflight_per_worker = 1;
  o.max_queued = 2;
  o.queue_timeout = 300ms;
  auto p = must_pool(o);
  std::atomic<int> answered{0};
  std::vector<errc> codes;
  std::mutex mu;
  auto note = [&](expected<value> v) {
    std::lock_guard<std::mutex> g{mu};
    codes.push_back(v ? errc::none : v.error().code);
    ++answered;
  };
  p.eval_async("time.sleep(1.5)\nreturn 1", {}, {}, note);  // occupies the worker
  ASSERT_TRUE(eventually([&] { return p.stats().in_flight == 1; }));
  p.eval_async("return 2", {}, {}, note);  // queued
  p.eval_async("return 3", {}, {}, note);  // queued
  auto over = p.eval("return 4");          // the queue is full
  ASSERT_FALSE(over);
  EXPECT_EQ(over.error().code, errc::overloaded) << over.error();
  ASSERT_TRUE(eventually([&] { return answered == 3; }));
  std::lock_guard<std::mutex> g{mu};
  EXPECT_EQ(std::count(codes.begin(), codes.end(), errc::timeout), 2) << "queued ones time out";
  EXPECT_EQ(std::count(codes.begin(), codes.end(), errc::none), 1);
}

TEST_F(pool_test, envs_are_pinned_and_a_durable_env_survives_its_workers_crash) {
  auto p = must_pool(pool_opts(3));
  auto e = p.make_env({.vars = {{"n", 1}}, .durable = true});
  ASSERT_TRUE(e) << e.error();
  auto pid = e->eval("return os.getpid()");
  for (int i = 0; i < 10; ++i) {
    auto v = e->eval("n += 1\nreturn os.getpid()");
    ASSERT_TRUE(v) << v.error();
    EXPECT_EQ(pid_of(v), pid_of(pid)) << "an env's requests go to its worker";
  }
  ASSERT_EQ(::kill(static_cast<int>(pid_of(pid)), SIGKILL), 0);
  ASSERT_TRUE(eventually([&] {
    auto now = ready_pids(p);
    return now.size() == 3 && now.count(static_cast<int>(pid_of(pid))) == 0;
  }, 20s));
  auto n = e->eval("return n");
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(n->to<long long>().value(), 1) << "rebuilt from its recipe (no replayed evals)";
  // An env made from another lives on the same worker.
  auto child = p.make_env({.from = {{*e, std::nullopt, std::nullopt}}});
  ASSERT_TRUE(child) << child.error();
  EXPECT_EQ(pid_of(child->eval("return os.getpid()")), pid_of(e->eval("return os.getpid()")));
  for (auto& w : p.stats().per_worker)
    track_pid(w.pid);
}

TEST_F(pool_test, the_actor_interface_mirrors_the_interpreters) {
  auto p = must_pool(pool_opts(2));
  caf::scoped_actor self{rt_->system()};
  value got;
  self->request(p.actor(), caf::infinite, eval_atom::value,
                eval_request{"return 6 * 7", {}, {}, 0})
    .receive([&](value& v) { got = std::move(v); },
             [&](caf::error& err) { FAIL() << to_error(err); });
  EXPECT_EQ(got.to<long long>().value(), 42);
  std::uint64_t env = 0;
  make_env_request mk;
  mk.vars = {{"x", 5}};
  mk.key = "tenant-a";
  self->request(p.actor(), caf::infinite, make_env_atom::value, mk)
    .receive([&](std::uint64_t id) { env = id; }, [&](caf::error& err) { FAIL() << to_error(err); });
  ASSERT_NE(env, 0u);
  for (int i = 0; i < 5; ++i)
    self->request(p.actor(), caf::infinite, eval_atom::value,
                  eval_request{"x += 1\nreturn x", {}, {}, env})
      .receive([&](value& v) { EXPECT_EQ(v.to<long long>().value(), 6 + i); },
               [&](caf::error& err) { FAIL() << to_error(err); });
  self->send(p.actor(), drop_env_atom::value, env);
  self->request(p.actor(), caf::infinite, eval_atom::value, eval_request{"return x", {}, {}, env})
    .receive([&](value&) { FAIL() << "a dropped env answered"; },
             [&](caf::error& err) { EXPECT_EQ(to_error(err).code, errc::env_not_found); });
  self->request(p.actor(), caf::infinite, pool_resize_atom::value, std::size_t{3})
    .receive([](bool) {}, [&](caf::error& err) { FAIL() << to_error(err); });
  ASSERT_TRUE(p.wait_ready(3, scaled(20s)));
  self->request(p.actor(), caf::infinite, pool_stats_atom::value)
    .receive([&](pool_stats& s) { EXPECT_EQ(s.workers, 3u); },
             [&](caf::error& err) { FAIL() << to_error(err); });
  for (auto& w : p.stats().per_worker)
    track_pid(w.pid);
}

TEST_F(pool_test, resize_down_drains_and_interrupt_cancels_everything) {
  auto p = must_pool(pool_opts(3));
  ASSERT_TRUE(p.resize(1));
  ASSERT_TRUE(eventually([&] { return p.stats().workers == 1; }, 20s));
  std::atomic<int> cancelled{0};
  for (int i = 0; i < 3; ++i)
    p.eval_async("time.sleep(30)", {}, {}, [&](expected<value> v) {
      if (!v && v.error().code == errc::cancelled)
        ++cancelled;
    });
  ASSERT_TRUE(eventually([&] { return p.stats().in_flight == 3; }));
  auto n = p.interrupt();
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(*n, 3u);
  ASSERT_TRUE(eventually([&] { return cancelled == 3; }));
  ASSERT_TRUE(p.resize(0).error().code == errc::invalid_argument);
}

TEST_F(pool_test, bad_options_are_config_errors) {
  auto bad = [&](auto tweak) {
    auto o = pool_opts(2);
    tweak(o);
    auto p = rt_->spawn_pool(o);
    return !p && p.error().code == errc::config_error;
  };
  EXPECT_TRUE(bad([](pool_options& o) { o.workers = 0; }));
  EXPECT_TRUE(bad([](pool_options& o) { o.min_ready = 3; }));
  EXPECT_TRUE(bad([](pool_options& o) { o.limits = {2s, 1s}; }));
  EXPECT_TRUE(bad([](pool_options& o) { o.autoscale.max_workers = 1; }));
  EXPECT_TRUE(bad([](pool_options& o) { o.max_inflight_per_worker = 0; }));
  EXPECT_TRUE(bad([](pool_options& o) { o.worker.default_timeout = 0ms; }));
}

} // namespace
