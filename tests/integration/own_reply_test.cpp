// A blocking eval or call that is alone in flight reads its reply from the pipe itself (issue
// 12, io::connection::read_reply_here); everything else it meets goes to the I/O thread, and
// every completion from elsewhere (a deadline, an interrupt, a crash) still reaches it.
#include <algorithm>
#include <atomic>
#include <future>
#include <thread>

#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {
class own_reply_test : public runtime_test {};
} // namespace

TEST_F(own_reply_test, a_blocking_eval_alone_reads_its_own_reply) {
  auto py = must_spawn(options());
  auto before = py.stats();
  constexpr int n = 200;
  for (int i = 0; i < n; ++i) {
    auto r = py.eval("return x * 2", {{"x", i}}, {.timeout = scaled(10s)});
    ASSERT_TRUE(r) << r.error();
    ASSERT_EQ(r->as<int>(), 2 * i);
  }
  auto after = py.stats();
  EXPECT_EQ(after.requests_served - before.requests_served, std::uint64_t{n});
  // The I/O thread reads a reply that arrives before the caller took the pipe: with code this
  // quick, how many depends on the machine (a sanitizer build's host is slow), so only some.
  EXPECT_GE(after.replies_read_by_caller - before.replies_read_by_caller, 1u);
  EXPECT_LE(after.replies_read_by_caller - before.replies_read_by_caller, std::uint64_t{n});
  // Code that takes 2 ms leaves the caller time to take the pipe: nearly every reply.
  constexpr int slow = 40;
  for (int i = 0; i < slow; ++i) {
    auto r = py.eval("import time\ntime.sleep(0.002)\nreturn x", {{"x", i}}, {.timeout = scaled(10s)});
    ASSERT_TRUE(r) << r.error();
    ASSERT_EQ(r->as<int>(), i);
  }
  EXPECT_GE(py.stats().replies_read_by_caller - after.replies_read_by_caller, std::uint64_t{slow} / 2);
  // A call, and an env's eval, too.
  auto env = py.make_env({});
  ASSERT_TRUE(env) << env.error();
  auto mid = py.stats().replies_read_by_caller;
  for (int i = 0; i < 20; ++i) {
    auto c = py.call("len", {arg{std::string(static_cast<std::size_t>(i), 'x')}}, {}, {.timeout = scaled(10s)});
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->as<int>(), i);
    auto e = env->eval("return y + 1", {{"y", i}}, {.timeout = scaled(10s)});
    ASSERT_TRUE(e) << e.error();
    EXPECT_EQ(e->as<int>(), i + 1);
  }
  EXPECT_GE(py.stats().replies_read_by_caller - mid, 1u);
}

TEST_F(own_reply_test, other_frames_during_the_eval_go_to_the_io_thread) {
  std::atomic<int> calls{0};
  rt_->expose("twice", [&calls](int v) {
    ++calls;
    return 2 * v;
  });
  auto o = options();
  o.shared_memory_threshold = std::size_t{1} << 20;
  auto py = must_spawn(o);
  // Host calls (a request from Python), a logging record and a print (notifications) come
  // before the reply, on the pipe the caller reads.
  for (int i = 0; i < 20; ++i) {
    captured_output out;
    auto r = py.eval(
      "import logging, pyvisor\n"
      "logging.getLogger('own').warning('record %d', i)\n"
      "print('line', i)\n"
      "return await pyvisor.call('twice', i) + await pyvisor.call('twice', 1)",
      {{"i", i}}, {.timeout = scaled(10s), .capture = &out});
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->as<int>(), 2 * i + 2);
    EXPECT_EQ(out.out, "line " + std::to_string(i) + "\n");
    // In pipe order: the record, written before the reply, reached the sink before it.
    auto record = "record " + std::to_string(i);
    auto seen = logs();
    EXPECT_TRUE(std::any_of(seen.begin(), seen.end(), [&](const captured_line& l) {
      return l.source == log_source::python_logging && l.line.find(record) != std::string::npos;
    })) << record;
  }
  EXPECT_EQ(calls.load(), 40);
  // Synchronous code: the record comes first on the pipe the caller reads, then its reply.
  for (int i = 0; i < 20; ++i) {
    auto r = py.eval("import logging\nlogging.getLogger('own').warning('sync %d', i)\nreturn i",
                     {{"i", i}}, {.timeout = scaled(10s)});
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->as<int>(), i);
    auto record = "sync " + std::to_string(i);
    auto seen = logs();
    EXPECT_TRUE(std::any_of(seen.begin(), seen.end(), [&](const captured_line& l) {
      return l.source == log_source::python_logging && l.line == record;
    })) << record;
  }
  // A reply by shared memory and a large one through the pipe (its own buffer).
  auto big = py.eval("return b'a' * (3 << 20)", {}, {.timeout = scaled(30s)});
  ASSERT_TRUE(big) << big.error();
  EXPECT_EQ(big->object().via.bin.size, std::size_t{3} << 20);
  auto o2 = options();
  o2.shared_memory_threshold = 0;
  auto piped = must_spawn(o2);
  for (int i = 0; i < 3; ++i) {
    auto p = piped.eval("return b'b' * (5 << 20)", {}, {.timeout = scaled(30s)});
    ASSERT_TRUE(p) << p.error();
    EXPECT_EQ(p->object().via.bin.size, std::size_t{5} << 20);
  }
  EXPECT_GE(piped.stats().replies_read_by_caller, 1u);
  // The interpreter serves as before.
  auto ok = py.eval("return 7", {}, {.timeout = scaled(10s)});
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->as<int>(), 7);
}

TEST_F(own_reply_test, completions_from_elsewhere_reach_a_caller_reading_its_reply) {
  auto py = must_spawn(options());
  // The deadline (the I/O thread's timer) answers it: the caller leaves its poll at once.
  auto t0 = std::chrono::steady_clock::now();
  auto r = py.eval("import time\ntime.sleep(30)", {}, {.timeout = 300ms});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout) << r.error();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(10s));
  // An interrupt from another thread.
  std::promise<expected<value>> busy;
  auto answer = busy.get_future();
  std::thread caller{[&] { busy.set_value(py.eval("while True:\n    pass", {}, {.timeout = scaled(60s)})); }};
  ASSERT_TRUE(eventually([&] { return py.stats().in_flight == 1; }));
  // Interrupted until it answers (one sent before the runner reads the request cancels it too).
  std::size_t interrupted = 0;
  ASSERT_TRUE(eventually([&] {
    auto n = py.interrupt();
    interrupted += n ? *n : 0;
    return answer.wait_for(50ms) == std::future_status::ready;
  }));
  caller.join();
  auto got = answer.get();
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().code, errc::cancelled) << got.error();
  EXPECT_GE(interrupted, 1u);
  // The process dies while the caller reads: it gets the exit, with the signal.
  auto dead = py.eval("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)", {},
                      {.timeout = scaled(30s)});
  ASSERT_FALSE(dead);
  EXPECT_EQ(dead.error().code, errc::interpreter_exited) << dead.error();
  EXPECT_NE(dead.error().message.find("SIGKILL"), std::string::npos) << dead.error();
}

TEST_F(own_reply_test, callers_on_many_threads_mixed_with_async_requests) {
  rt_->expose("echo", [](int v) { return v; });
  auto py = must_spawn(options());
  auto served = py.stats().requests_served;
  constexpr int threads = 4, per_thread = 150, async_count = 300;
  std::atomic<int> wrong{0}, answered_async{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        auto code = (i % 3 == 0) ? "import pyvisor\nreturn await pyvisor.call('echo', v)" : "return v";
        auto r = py.eval(code, {{"v", t * 1000 + i}}, {.timeout = scaled(30s)});
        if (!r || r->as<int>() != t * 1000 + i)
          ++wrong;
      }
    });
  std::promise<void> all_async;
  auto async_done = all_async.get_future();
  for (int i = 0; i < async_count; ++i)
    py.eval_async("return v + 1", {{"v", i}}, {.timeout = scaled(30s)},
                  [&, i](expected<value> r) {
                    if (!r || r->as<int>() != i + 1)
                      ++wrong;
                    if (++answered_async == async_count)
                      all_async.set_value();
                  });
  for (auto& th : pool)
    th.join();
  ASSERT_EQ(async_done.wait_for(scaled(60s)), std::future_status::ready);
  EXPECT_EQ(wrong.load(), 0);
  auto s = py.stats();
  EXPECT_EQ(s.requests_served - served, std::uint64_t{threads * per_thread + async_count});
  EXPECT_EQ(s.in_flight, 0u);
}

TEST_F(own_reply_test, a_threads_wake_ends_with_the_thread) {
  auto py = must_spawn(options());
  ASSERT_TRUE(py.eval("return 0", {}, {.timeout = scaled(10s)}));  // this thread's wake
  auto fds = open_fds().size();
  for (int i = 0; i < 30; ++i) {
    std::thread t{[&] {
      auto r = py.eval("return 1", {}, {.timeout = scaled(10s)});
      EXPECT_TRUE(r) << r.error();
    }};
    t.join();
  }
  // Each thread's eventfd was closed when it ended (the teardown checks the runtime's end).
  EXPECT_TRUE(eventually([&] { return open_fds().size() == fds; }))
    << "fds: " << open_fds().size() << " vs " << fds;
}

TEST_F(own_reply_test, a_pool_caller_alone_on_its_worker_reads_its_own_reply) {
  rt_->expose("echo", [](int v) { return v; });
  pool_options o;
  o.name = "own";
  o.workers = 2;
  o.worker = options();
  auto made = rt_->spawn_pool(std::move(o));
  ASSERT_TRUE(made) << made.error();
  auto& p = *made;
  for (auto& w : p.stats().per_worker)
    track_pid(w.pid);
  // Code that takes 2 ms leaves the caller time to take the pipe (see above).
  constexpr int n = 40;
  for (int i = 0; i < n; ++i) {
    auto r = p.eval("import time\ntime.sleep(0.002)\nreturn x + 1", {{"x", i}}, {.timeout = scaled(10s)});
    ASSERT_TRUE(r) << r.error();
    ASSERT_EQ(r->as<int>(), i + 1);
  }
  std::uint64_t read = 0, served = 0;
  for (auto& w : p.stats().per_worker) {
    read += w.replies_read_by_caller;
    served += w.served;
  }
  EXPECT_EQ(served, std::uint64_t{n});
  EXPECT_GE(read, std::uint64_t{n} / 2);
  // Callers on several threads (often not alone on their worker) get every answer right.
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        auto code = (i % 4 == 0) ? "import pyvisor\nreturn await pyvisor.call('echo', v)" : "return v";
        auto r = p.eval(code, {{"v", t * 1000 + i}}, {.timeout = scaled(30s)});
        if (!r || r->as<int>() != t * 1000 + i)
          ++wrong;
      }
    });
  for (auto& th : threads)
    th.join();
  EXPECT_EQ(wrong.load(), 0);
  ASSERT_TRUE(p.stop());
}
