// Cancellation of async code, interrupts of synchronous code, escalation to kill (issue 3).
#include <fstream>

#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

class interrupt_test : public runtime_test {};

} // namespace

TEST_F(interrupt_test, busy_loop_times_out_is_interrupted_and_the_interpreter_serves_again) {
  auto o = options();
  o.interrupt = {.grace = 50ms, .kill_after = 5000ms};
  auto py = must_spawn(o);
  int pid = py.os_pid();
  auto t0 = std::chrono::steady_clock::now();
  auto r = py.eval("while True:\n    pass", {}, {.timeout = 200ms});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(2s));
  // The loop gets KeyboardInterrupt: the next eval runs on the same process within 1 s
  // (nominal ~50 ms grace; generous bound for a noisy machine).
  auto t1 = std::chrono::steady_clock::now();
  auto next = py.eval("return 'served'", {}, {.timeout = 5s});
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(next->as<std::string>(), "served");
  EXPECT_LT(std::chrono::steady_clock::now() - t1, scaled(5s));
  EXPECT_EQ(py.os_pid(), pid);
  EXPECT_EQ(py.state(), interpreter_state::ready);
}

TEST_F(interrupt_test, sleeping_sync_code_is_interrupted_too) {
  auto o = options();
  o.interrupt = {.grace = 50ms, .kill_after = 5000ms};
  auto py = must_spawn(o);
  auto r = py.eval("import time\ntime.sleep(30)", {}, {.timeout = 200ms});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout);
  auto next = py.eval("return 1", {}, {.timeout = 5s});
  ASSERT_TRUE(next) << next.error().to_string();
}

TEST_F(interrupt_test, interrupt_cancels_everything_in_flight_with_cancelled) {
  auto py = must_spawn(options());
  auto mark = marker("intr");
  expected<value> sync_result = make_error(errc::none, "");
  expected<value> async_result = make_error(errc::none, "");
  std::thread a([&] {
    async_result = py.eval("import asyncio\nawait asyncio.sleep(30)", {}, {.timeout = 20s});
  });
  std::thread s([&] {
    sync_result = py.eval("import time\nopen(mark, 'w').close()\nwhile True:\n    time.sleep(0.01)",
                          {{"mark", mark}}, {.timeout = 20s});
  });
  ASSERT_TRUE(wait_file(mark));
  auto n = py.interrupt();
  ASSERT_TRUE(n);
  s.join();
  a.join();
  EXPECT_GE(*n, 1u);
  ASSERT_FALSE(sync_result);
  EXPECT_EQ(sync_result.error().code, errc::cancelled) << sync_result.error().to_string();
  ASSERT_FALSE(async_result);
  EXPECT_EQ(async_result.error().code, errc::cancelled) << async_result.error().to_string();
  EXPECT_EQ(py.eval("return 2")->as<int>(), 2);
}

TEST_F(interrupt_test, code_that_swallows_interrupts_is_killed) {
  auto o = options();
  o.interrupt = {.grace = 50ms, .kill_after = 300ms};
  auto py = must_spawn(o);
  int pid = py.os_pid();
  auto r = py.eval(
    "while True:\n"
    "    try:\n"
    "        while True:\n"
    "            pass\n"
    "    except KeyboardInterrupt:\n"
    "        pass",
    {}, {.timeout = 100ms});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout);
  EXPECT_TRUE(eventually([&] { return py.state() == interpreter_state::stopped; }, 10s));
  EXPECT_TRUE(eventually([&] { return process_gone(pid); }));
  auto after = py.eval("return 1");
  ASSERT_FALSE(after);
  EXPECT_EQ(after.error().code, errc::interpreter_exited);
  EXPECT_NE(after.error().message.find("ignored cancellation"), std::string::npos)
    << after.error().message;
}

TEST_F(interrupt_test, a_sigint_taken_by_another_thread_still_wakes_the_idle_loop) {
  // The runner's loop sleeps in epoll_wait with the input held back (one task at
  // max_inflight 1: the host's cancel stays unread), so only the interrupt can stop the task.
  // Here SIGINT is blocked in the main thread and taken by a helper thread, as a signal that
  // arrives just before the loop enters epoll_wait is: Python only marks its handler due, and
  // nothing wakes the loop for 30 s. The wakeup fd (signal.set_wakeup_fd) must wake it, also
  // after user code removed it (as asyncio's remove_signal_handler does).
  auto o = options();
  o.busy_limits.max_inflight = 1;
  o.interrupt = {.grace = 50ms, .kill_after = scaled(5s)};
  auto py = must_spawn(o);
  int pid = py.os_pid();
  auto stuck_task_is_interrupted = [&] {
    auto r = py.eval(
      "import asyncio, signal, threading\n"
      "done = threading.Event()\n"
      "threading.Thread(target=done.wait, daemon=True).start()\n"
      "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})\n"
      "try:\n"
      "    await asyncio.sleep(30)\n"
      "finally:\n"
      "    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})\n"
      "    done.set()",
      {}, {.timeout = 200ms});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::timeout);
    auto t1 = std::chrono::steady_clock::now();
    auto next = py.eval("return 'served'", {}, {.timeout = scaled(10s)});
    ASSERT_TRUE(next) << next.error().to_string();
    EXPECT_EQ(next->as<std::string>(), "served");
    EXPECT_LT(std::chrono::steady_clock::now() - t1, scaled(3s));
    EXPECT_EQ(py.os_pid(), pid) << "killed: the interrupt was not handled before kill_after";
  };
  stuck_task_is_interrupted();
  auto removed = py.eval("import signal\nreturn signal.set_wakeup_fd(-1)");
  ASSERT_TRUE(removed) << removed.error().to_string();
  EXPECT_GE(removed->as<int>(), 0) << "the runner serves without a wakeup fd";
  stuck_task_is_interrupted();
  auto mask = py.eval("import signal\nreturn signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])");
  ASSERT_TRUE(mask) << mask.error().to_string();
  EXPECT_FALSE(mask->as<bool>());
}

TEST_F(interrupt_test, late_replies_are_dropped_and_nothing_leaks) {
  auto py = must_spawn(options());
  for (int i = 0; i < 20; ++i) {
    auto r = py.eval("import asyncio\nawait asyncio.sleep(0.05)", {}, {.timeout = 1ms});
    (void) r;  // either outcome; the late reply must not be delivered elsewhere
  }
  for (int i = 0; i < 20; ++i)
    EXPECT_EQ(py.eval("return i", {{"i", i}})->as<int>(), i);
}

TEST_F(interrupt_test, print_is_tagged_with_the_request_and_capture_returns_it) {
  auto o = options();
  o.label = "printer";
  auto py = must_spawn(o);
  ASSERT_TRUE(py.eval("print('tagged line')"));
  EXPECT_TRUE(wait_log([](auto& l) { return l.line == "tagged line"; }));
  for (auto& l : logs()) {
    if (l.line == "tagged line") {
      EXPECT_NE(l.request_id, 0u);
    }
  }
  captured_output out;
  auto r = py.eval("import sys\nprint('to out')\nprint('to err', file=sys.stderr)\nreturn 5", {},
                   {.capture = &out});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<int>(), 5);
  EXPECT_EQ(out.out, "to out\n");
  EXPECT_EQ(out.err, "to err\n");
  captured_output failing;
  auto e = py.eval("print('before the error')\n1/0", {}, {.capture = &failing});
  ASSERT_FALSE(e);
  EXPECT_EQ(failing.out, "before the error\n");
  for (auto& l : logs())
    EXPECT_NE(l.line, "to out");
}
