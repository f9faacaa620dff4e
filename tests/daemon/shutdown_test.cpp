// SIGTERM with requests in flight (docs/http.md, "SIGTERM / SIGINT"): no new connections, the
// running requests finish and are answered, the tree stops with every process reaped, exit 0.
#include <atomic>
#include <cstring>
#include <thread>

#include "daemon_fixture.hpp"

namespace pyvisor::daemon_test {
namespace {

class Shutdown : public DaemonTest {};

TEST_F(Shutdown, SigtermLetsRequestsInFlightFinishAndRefusesNewConnections) {
  ASSERT_TRUE(start(make_config(default_pool(4))));
  worker_pids("default");
  constexpr int n = 4;
  std::vector<reply> answers(n);
  std::vector<long long> answered_at(n, -1);
  const auto t_start = std::chrono::steady_clock::now();
  std::vector<std::thread> clients;
  for (int i = 0; i < n; ++i)
    clients.emplace_back([&, i] {
      gateway_client c(port_);
      answers[static_cast<std::size_t>(i)] =
        c.eval("default", "import time\ntime.sleep(1)\nreturn " + std::to_string(i));
      answered_at[static_cast<std::size_t>(i)] = ms_since(t_start);
    });
  // All four are running in the workers before the signal.
  ASSERT_TRUE(eventually([&] {
    json p = pool_status("default");
    return p.is_object() && p["in_flight"] == n;
  })) << pool_status("default").dump();

  const std::vector<int> tree = descendants_of(daemon_pid());
  const auto t_signal = ms_since(t_start);
  signal_daemon(SIGTERM);
  // New connections are refused soon after the signal, while the requests still run.
  long long refused_at = -1;
  EXPECT_TRUE(eventually(
    [&] {
      raw_socket s(port_);
      if (s.connected())
        return false;
      refused_at = ms_since(t_start);
      // Refused; or reset, when the connect raced the listener's close (the kernel had
      // queued it, then the close dropped it): not accepted either way.
      EXPECT_TRUE(s.connect_errno() == ECONNREFUSED || s.connect_errno() == ECONNRESET)
        << std::strerror(s.connect_errno());
      return true;
    },
    5s));

  for (auto& t : clients)
    t.join();
  const int st = finish_stop(tree, 10s + 10s);  // shutdown_grace + a margin
  const auto exited_at = ms_since(t_start);
  EXPECT_EQ(st, 0);
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(answers[static_cast<std::size_t>(i)].status, 200) << answers[static_cast<std::size_t>(i)].describe();
    EXPECT_EQ(answers[static_cast<std::size_t>(i)].doc, json({{"value", i}}));
  }
  const long long first_answer = *std::min_element(answered_at.begin(), answered_at.end());
  EXPECT_GE(refused_at, t_signal);
  EXPECT_LT(refused_at, first_answer)
    << "the listener still accepted connections while requests were finishing";
  std::cout << "[ timing ] SIGTERM at " << t_signal << " ms, refused at " << refused_at
            << " ms, answers from " << first_answer << " ms, exit at " << exited_at << " ms\n";
}

TEST_F(Shutdown, SigintStopsTooAndAnIdleDaemonExitsPromptly) {
  ASSERT_TRUE(start(make_config(default_pool(2))));
  ASSERT_EQ(client().eval("default", "return 1").status, 200);
  worker_pids("default");
  std::vector<int> tree = descendants_of(daemon_pid());
  tree.insert(tree.end(), noted_pids_.begin(), noted_pids_.end());
  const auto t0 = std::chrono::steady_clock::now();
  signal_daemon(SIGINT);
  EXPECT_EQ(finish_stop(tree, 10s), 0);
  const auto took = ms_since(t0);
  EXPECT_LT(took, scaled(5s).count()) << "an idle daemon took " << took << " ms to stop";
  EXPECT_NE(stderr_text().find("stopping (SIGINT)"), std::string::npos) << stderr_text();
  std::cout << "[ timing ] idle daemon stopped " << took << " ms after SIGINT\n";
}

} // namespace
} // namespace pyvisor::daemon_test
