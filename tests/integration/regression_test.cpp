// Regression tests of the defects found by trying to break the runtime (issue 7): each one
// failed before its fix. Real Python processes; the fixture's leak audit runs after each.
#include <fstream>
#include <future>
#include <thread>

#include <caf/all.hpp>

#include "pyvisor/actor_interface.hpp"
#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

class regression_test : public runtime_test {};

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

} // namespace

// Defect 3: a write error to a live child (Python closed fd 3) was dropped silently: the
// request stayed pending forever for eval_async.
TEST_F(regression_test, write_error_to_a_live_child_fails_the_request_at_once) {
  auto py = must_spawn(options());
  ASSERT_TRUE(py.eval("import os\nos.close(3)"));
  std::promise<expected<value>> done;
  py.eval_async("return 1", {}, {}, [&](expected<value> r) { done.set_value(std::move(r)); });
  auto f = done.get_future();
  ASSERT_EQ(f.wait_for(scaled(10s)), std::future_status::ready) << "the request was never answered";
  auto r = f.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error) << r.error().to_string();
  EXPECT_TRUE(contains(r.error().message, "fd 3")) << r.error().message;
  // The process is ended, and later calls get the same reason at once.
  EXPECT_TRUE(eventually([&] { return py.state() == interpreter_state::stopped; }));
  auto again = py.eval("return 2", {}, {.timeout = 30s});
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, errc::protocol_error);
}

// Defect 5: interpreter::interrupt() never escalated to a kill: code that swallows
// KeyboardInterrupt kept its caller blocked until the caller's own deadline.
TEST_F(regression_test, interrupt_escalates_to_a_kill_like_the_actor_interface) {
  auto o = options();
  o.interrupt = {.grace = 50ms, .kill_after = 300ms};
  auto py = must_spawn(o);
  auto mark = marker("swallow");
  auto f = std::async(std::launch::async, [py, mark]() mutable {
    return py.eval("import time\nopen(path, 'w').close()\nwhile True:\n"
                   "    try:\n        time.sleep(10)\n    except KeyboardInterrupt:\n"
                   "        pass\n",
                   {{"path", mark}}, {.timeout = 60s});
  });
  ASSERT_TRUE(wait_file(mark));
  auto t0 = std::chrono::steady_clock::now();
  auto n = py.interrupt();
  ASSERT_TRUE(n);
  EXPECT_GE(*n, 1u);
  ASSERT_EQ(f.wait_for(scaled(10s)), std::future_status::ready)
    << "the caller stayed blocked: interrupt() did not escalate to a kill";
  auto r = f.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited) << r.error().to_string();
  EXPECT_TRUE(contains(r.error().message, "ignored cancellation and SIGINT")) << r.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(10s));
}

// Defect 6: a pure-Python loop inside an async request was never interrupted (task.cancel()
// cannot run while the task spins): the process was killed and its envs lost.
TEST_F(regression_test, spinning_async_request_is_interrupted_without_a_kill) {
  auto o = options();
  o.interrupt = {.grace = 50ms, .kill_after = 3000ms};
  auto py = must_spawn(o);
  int pid = py.os_pid();
  auto env = py.make_env({.vars = {{"kept", 42}}});
  ASSERT_TRUE(env) << env.error().to_string();
  auto r = py.eval("import asyncio\nawait asyncio.sleep(0)\nwhile True:\n    pass", {},
                   {.timeout = 300ms});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout);
  // The loop is free again well before kill_after, on the same process, with the env intact.
  auto next = py.eval("return 'served'", {}, {.timeout = scaled(10s)});
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(py.os_pid(), pid);
  auto kept = env->eval("return kept");
  ASSERT_TRUE(kept) << kept.error().to_string();
  EXPECT_EQ(kept->as<int>(), 42);
}

// Defect 6, the same through interrupt(): the spinning async request gets `cancelled`.
TEST_F(regression_test, interrupt_reaches_a_spinning_async_request) {
  auto o = options();
  o.interrupt = {.grace = 50ms, .kill_after = 3000ms};
  auto py = must_spawn(o);
  int pid = py.os_pid();
  auto mark = marker("spin");
  auto f = std::async(std::launch::async, [py, mark]() mutable {
    return py.eval("import asyncio\nawait asyncio.sleep(0)\nopen(path, 'w').close()\n"
                   "while True:\n    pass",
                   {{"path", mark}}, {.timeout = 60s});
  });
  ASSERT_TRUE(wait_file(mark));
  ASSERT_TRUE(py.interrupt());
  ASSERT_EQ(f.wait_for(scaled(10s)), std::future_status::ready);
  auto r = f.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::cancelled) << r.error().to_string();
  EXPECT_EQ(py.os_pid(), pid);
  EXPECT_TRUE(py.eval("return 1"));
}

// Defect 7: stop() answered in-flight callers with `cancelled` (the runner cancels its tasks
// on shutdown) instead of interpreter_down.
TEST_F(regression_test, stop_answers_in_flight_callers_with_interpreter_down) {
  auto py = must_spawn(options());
  auto mark = marker("stop");
  auto f = std::async(std::launch::async, [py, mark]() mutable {
    return py.eval("import asyncio\nopen(path, 'w').close()\nawait asyncio.sleep(30)",
                   {{"path", mark}}, {.timeout = 60s});
  });
  ASSERT_TRUE(wait_file(mark));
  ASSERT_TRUE(py.stop());
  ASSERT_EQ(f.wait_for(scaled(10s)), std::future_status::ready);
  auto r = f.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_down) << r.error().to_string();
}

// Defect 8: ~runtime() hung forever when an exposed actor's only reference was the registry.
TEST_F(regression_test, runtime_destructor_returns_with_an_exposed_actor) {
  {
    auto inbox = rt_->system().spawn([]() -> caf::behavior {
      return {[](python_message_atom, const value&) {}};
    });
    rt_->expose_actor("inbox", inbox);
  }
  auto py = must_spawn(options());
  ASSERT_TRUE(py.eval("await pyvisor.send('inbox', 1)"));
  auto done = std::async(std::launch::async, [this] { rt_.reset(); });
  if (done.wait_for(scaled(30s)) != std::future_status::ready) {
    ADD_FAILURE() << "~runtime() hangs with an exposed actor";
    std::_Exit(1);  // the hung destructor cannot be recovered from
  }
}

// Defect 10: pending timers (init timeout, stop sequence) kept a stopped interpreter's actor,
// channel and read buffer alive for up to init_script_timeout (60 s).
TEST_F(regression_test, a_stopped_interpreter_is_released_promptly) {
  caf::actor_addr addr;
  {
    auto py = must_spawn(options());
    addr = py.actor().address();
    ASSERT_TRUE(py.stop());
  }
  EXPECT_TRUE(eventually([&] { return caf::actor_cast<caf::actor>(addr) == nullptr; }, 5s))
    << "the stopped interpreter's actor is still alive";
}

// Defect 12: a SIGSTOPped interpreter took the whole graceful + terminate bound to stop.
TEST_F(regression_test, stopping_a_stopped_process_does_not_wait_for_the_kill_bound) {
  auto o = options();
  o.shutdown = {.graceful = 300ms, .terminate = 20s};
  auto py = must_spawn(o);
  ASSERT_EQ(::kill(py.os_pid(), SIGSTOP), 0);
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(py.stop());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(10s))
    << "SIGTERM stayed pending in the stopped process until the SIGKILL bound";
}

// Beyond the peers: a process killed because its request ignored cancellation and SIGINT
// carries the Python stack of every thread at the kill, naming the line it was stuck on.
TEST_F(regression_test, kill_error_carries_the_stack_at_the_kill) {
  auto o = options();
  o.interrupt = {.grace = 50ms, .kill_after = 300ms};
  auto py = must_spawn(o);
  auto mark = marker("stack");
  // SIGINT blocked at the C level: no KeyboardInterrupt can ever reach the code.
  auto f = std::async(std::launch::async, [py, mark]() mutable {
    return py.eval("import signal, time\n"
                   "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})\n"
                   "open(path, 'w').close()\n"
                   "time.sleep(60)\n",
                   {{"path", mark}}, {.timeout = 60s, .file = "stuck.py"});
  });
  ASSERT_TRUE(wait_file(mark));
  ASSERT_TRUE(py.interrupt());
  ASSERT_EQ(f.wait_for(scaled(10s)), std::future_status::ready);
  auto r = f.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited) << r.error().to_string();
  std::string stack;
  for (auto& l : r.error().traceback)
    stack += l + "\n";
  EXPECT_TRUE(contains(stack, "File \"stuck.py\", line 4")) << stack;
}
