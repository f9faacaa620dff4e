// Busy limits (issue 4): bounded memory on both sides under floods, `overloaded` for the
// excess, every accepted request answered exactly once.
#include <csignal>
#include <fstream>
#include <future>

#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

class backpressure_test : public runtime_test {};

long rss_kib(int pid = 0) {
  std::ifstream f(pid == 0 ? "/proc/self/status" : "/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return -1;
}

/// Submits `n` requests of `payload` bytes without waiting; counts outcomes.
struct flood {
  std::atomic<long> ok{0}, overloaded{0}, other{0}, completions{0};
  std::vector<std::atomic<int>> seen;
  explicit flood(std::size_t n) : seen(n) {}
  void run(interpreter& py, std::size_t n, const std::string& payload, const char* code) {
    for (std::size_t i = 0; i < n; ++i) {
      py.eval_async(code, {{"p", payload}, {"i", static_cast<std::int64_t>(i)}}, {},
                    [this, i](expected<value> r) {
                      seen[i].fetch_add(1);
                      if (r)
                        ++ok;
                      else if (r.error().code == errc::overloaded)
                        ++overloaded;
                      else
                        ++other;
                      ++completions;
                    });
    }
  }
};

} // namespace

TEST_F(backpressure_test, flood_of_100k_requests_is_bounded_and_each_answered_once) {
  auto o = options();
  o.busy_limits.max_inflight = 256;
  o.busy_limits.max_queued = 2000;
  auto py = must_spawn(o);
  constexpr std::size_t n = 100000;
  std::string payload(1024, 'x');
  auto before = rss_kib();
  flood f{n};
  f.run(py, n, payload, "import time\ntime.sleep(0.0002)\nreturn i");
  auto during = rss_kib();
  ASSERT_TRUE(eventually([&] { return f.completions.load() == static_cast<long>(n); }, 120s))
    << f.completions.load();
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_EQ(f.seen[i].load(), 1) << "request " << i;
  EXPECT_GT(f.overloaded.load(), 0);
  EXPECT_GE(f.ok.load(), 2000);  // at least what the queue holds got through
  EXPECT_EQ(f.other.load(), 0);
  // Accepted requests are bounded by in-flight + queue; their 1 KiB payloads (and the frames
  // in the pipe) bound the growth: documented bound 64 MiB, nominally ~5 MiB.
  EXPECT_LT(during - before, 64 * 1024) << "RSS grew by " << (during - before) << " KiB";
  auto s = py.stats();
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.admission_queue, 0u);
  EXPECT_GT(s.overloaded, 0u);
  EXPECT_EQ(py.eval("return 'alive'")->as<std::string>(), "alive");
}

TEST_F(backpressure_test, flood_while_the_child_is_stopped) {
  auto o = options();
  o.busy_limits.max_inflight = 128;
  o.busy_limits.max_queued = 1000;
  auto py = must_spawn(o);
  ASSERT_EQ(::kill(py.os_pid(), SIGSTOP), 0);
  constexpr std::size_t n = 20000;
  flood f{n};
  f.run(py, n, std::string(1024, 'y'), "return i");
  // Nothing can be answered while stopped; the excess is refused at once.
  EXPECT_EQ(f.overloaded.load(), static_cast<long>(n - 128 - 1000));
  auto s = py.stats();
  EXPECT_EQ(s.in_flight, 128u);
  EXPECT_EQ(s.admission_queue, 1000u);
  ASSERT_EQ(::kill(py.os_pid(), SIGCONT), 0);
  ASSERT_TRUE(eventually([&] { return f.completions.load() == static_cast<long>(n); }, 60s));
  EXPECT_EQ(f.ok.load(), 128 + 1000);
  for (std::size_t i = 0; i < n; ++i)
    ASSERT_EQ(f.seen[i].load(), 1);
}

TEST_F(backpressure_test, big_payloads_make_the_interpreter_busy_and_then_not) {
  auto o = options();
  o.busy_limits.high_water = 1 << 20;
  o.busy_limits.low_water = 256 << 10;
  auto py = must_spawn(o);
  ASSERT_EQ(::kill(py.os_pid(), SIGSTOP), 0);
  flood f{40};
  f.run(py, 40, std::string(256 << 10, 'z'), "return len(p)");
  auto s = py.stats();
  EXPECT_GE(s.busy_transitions, 1u);
  EXPECT_LE(s.queued_bytes, (2u << 20) + (256u << 10));  // stopped writing above high water
  EXPECT_GT(s.admission_queue, 0u);
  ASSERT_EQ(::kill(py.os_pid(), SIGCONT), 0);
  ASSERT_TRUE(eventually([&] { return f.completions.load() == 40; }, 60s));
  EXPECT_EQ(f.ok.load(), 40);
}

TEST_F(backpressure_test, disabled_limits_work) {
  auto o = options();
  o.busy_limits.disabled = true;
  auto py = must_spawn(o);
  flood f{5000};
  f.run(py, 5000, "", "return i");
  ASSERT_TRUE(eventually([&] { return f.completions.load() == 5000; }, 60s));
  EXPECT_EQ(f.ok.load(), 5000);
}

TEST_F(backpressure_test, a_million_casts_to_a_slow_host_stay_bounded) {
  std::atomic<long> received{0};
  rt_->expose("sink", [&received](std::int64_t) {
    ++received;
    if (received % 64 == 0)
      std::this_thread::sleep_for(std::chrono::microseconds(50));  // a slow consumer
  });
  auto py = must_spawn(options());
  int pid = py.os_pid();
  auto host_before = rss_kib();
  std::atomic<bool> done{false};
  long max_host = 0, max_child = 0;
  std::thread watcher([&] {
    while (!done) {
      max_host = std::max(max_host, rss_kib());
      max_child = std::max(max_child, rss_kib(pid));
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // sampling period
    }
  });
  auto child_before = rss_kib(pid);
  auto r = py.eval("for i in range(1_000_000):\n    await pyvisor.cast('sink', i)", {}, {.timeout = 600s});
  done = true;
  watcher.join();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(eventually([&] { return received.load() == 1000000; }, 120s)) << received.load();
  EXPECT_LT(max_host - host_before, 128 * 1024) << "host RSS grew by " << (max_host - host_before) << " KiB";
  EXPECT_LT(max_child - child_before, 128 * 1024) << "child RSS grew by " << (max_child - child_before) << " KiB";
  // Counted right after each host function returned.
  EXPECT_TRUE(eventually([&] { return py.stats().host_calls >= 1000000u; })) << py.stats().host_calls;
}
