// Start, failure, crash and stop of real Python processes.
#include <csignal>
#include <fstream>

#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {
class lifecycle_test : public runtime_test {};
} // namespace

TEST_F(lifecycle_test, missing_executable_is_spawn_failed) {
  auto o = options();
  o.python = "/nonexistent/python3";
  auto r = spawn(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::spawn_failed);
  EXPECT_NE(r.error().message.find("/nonexistent/python3"), std::string::npos);
  o.python = "no-such-python-anywhere";
  auto r2 = spawn(o);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, errc::spawn_failed);
  auto cwd = options();
  cwd.cwd = "/nonexistent-dir";
  auto r3 = spawn(cwd);
  ASSERT_FALSE(r3);
  EXPECT_EQ(r3.error().code, errc::spawn_failed);
}

TEST_F(lifecycle_test, init_failure_carries_the_python_traceback) {
  auto o = options();
  o.init_script = {"x = 1\nraise ValueError('bad init')", {}, "setup.py"};
  auto r = spawn(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::init_failed);
  EXPECT_EQ(r.error().python_type, "ValueError");
  EXPECT_NE(r.error().message.find("bad init"), std::string::npos);
  std::string tb;
  for (auto& l : r.error().traceback)
    tb += l;
  EXPECT_NE(tb.find("setup.py\", line 2"), std::string::npos) << tb;
  auto s = options();
  s.init_script = {"def (:"};
  auto r2 = spawn(s);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().code, errc::init_failed);
  EXPECT_EQ(r2.error().python_type, "SyntaxError");
}

TEST_F(lifecycle_test, init_timeout_sync_start) {
  auto o = options();
  o.init_script = {"import time\ntime.sleep(30)"};
  o.init_script_timeout = 500ms;
  auto t0 = std::chrono::steady_clock::now();
  auto r = spawn(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::init_timeout);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(5s));
}

TEST_F(lifecycle_test, init_failure_and_timeout_async_start) {
  auto o = options();
  o.sync_start = false;
  o.init_script = {"raise RuntimeError('late failure')"};
  auto r = spawn(o);
  ASSERT_TRUE(r) << "async start returns at once";
  auto e = r->eval("return 1");  // waits for the start, then fails with its error
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, errc::init_failed);
  auto w = r->wait_ready(scaled(10s));
  ASSERT_FALSE(w);
  EXPECT_EQ(w.error().code, errc::init_failed);
  EXPECT_TRUE(eventually([&] { return r->state() == interpreter_state::stopped; }));

  auto t = options();
  t.sync_start = false;
  t.init_script = {"import time\ntime.sleep(30)"};
  t.init_script_timeout = 300ms;
  auto r2 = spawn(t);
  ASSERT_TRUE(r2);
  auto w2 = r2->wait_ready(scaled(10s));
  ASSERT_FALSE(w2);
  EXPECT_EQ(w2.error().code, errc::init_timeout);
}

TEST_F(lifecycle_test, async_start_queues_calls_until_ready) {
  auto o = options();
  o.sync_start = false;
  o.init_script = {"import time\ntime.sleep(0.2)\nready_value = 5"};
  auto r = spawn(o);
  ASSERT_TRUE(r);
  auto v = r->eval("return ready_value");
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->as<int>(), 5);
  track_pid(r->os_pid());
}

TEST_F(lifecycle_test, os_exit_fails_the_pending_call_with_the_code) {
  auto py = must_spawn(options());
  auto r = py.eval("import os\nos._exit(3)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited);
  EXPECT_NE(r.error().message.find("code 3"), std::string::npos) << r.error().message;
  EXPECT_TRUE(eventually([&] { return py.state() == interpreter_state::stopped; }));
  auto again = py.eval("return 1");
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, errc::interpreter_exited);
}

TEST_F(lifecycle_test, sigkill_from_outside_fails_pending_calls_with_the_signal) {
  auto py = must_spawn(options());
  std::thread killer([&] {
    // Kill once the call is running inside Python.
    eventually([&] {
      std::ifstream f("/tmp/pyvisor-test-running-" + std::to_string(py.os_pid()));
      return f.good();
    });
    ::kill(py.os_pid(), SIGKILL);
  });
  auto r = py.eval("import os, time\nopen('/tmp/pyvisor-test-running-%d' % os.getpid(), 'w').close()\n"
                   "time.sleep(30)");
  killer.join();
  std::remove(("/tmp/pyvisor-test-running-" + std::to_string(py.os_pid())).c_str());
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited);
  EXPECT_NE(r.error().message.find("signal 9"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("SIGKILL"), std::string::npos) << r.error().message;
}

TEST_F(lifecycle_test, stop_escalates_to_sigkill_and_takes_the_grandchild) {
  auto o = options();
  o.shutdown = {.graceful = 200ms, .terminate = 300ms};
  auto py = must_spawn(o);
  // The interpreter ignores SIGTERM and blocks (so it never reads the shutdown frame), and
  // has a grandchild that ignores SIGTERM too.
  auto gc = py.eval(
    "import signal, subprocess, sys\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    "p = subprocess.Popen([sys.executable, '-c', 'import signal, time\\n"
    "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\ntime.sleep(60)'])\n"
    "return p.pid");
  ASSERT_TRUE(gc) << gc.error().to_string();
  int grandchild = gc->as<int>();
  int pid = py.os_pid();
  auto mark = "/tmp/pyvisor-test-blocking-" + std::to_string(::getpid());
  std::thread blocker([&] {
    (void) py.eval("import time\nopen(mark, 'w').close()\ntime.sleep(60)", {{"mark", mark}},
                   {.timeout = 30s});
  });
  ASSERT_TRUE(eventually([&] { return std::ifstream(mark).good(); }));  // the eval is running
  std::remove(mark.c_str());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(py.stop());
  auto took = std::chrono::steady_clock::now() - t0;
  blocker.join();
  EXPECT_EQ(py.state(), interpreter_state::stopped);
  EXPECT_GE(took, 450ms);  // graceful + terminate both elapsed: SIGTERM was ignored
  EXPECT_LT(took, scaled(5s));
  EXPECT_TRUE(eventually([&] { return process_gone(pid); }));
  EXPECT_TRUE(eventually([&] { return process_gone(grandchild); }));
  EXPECT_TRUE(live_in_group(pid).empty());
}

TEST_F(lifecycle_test, graceful_stop_is_quick_and_idempotent) {
  auto py = must_spawn(options());
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(py.stop());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(3s));  // the runner exits on the shutdown frame
  EXPECT_TRUE(py.stop());
  EXPECT_TRUE(py.stop());
  auto r = py.eval("return 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_down);
}

TEST_F(lifecycle_test, dropping_the_last_handle_stops_the_process) {
  int pid = 0;
  {
    auto py = must_spawn(options());
    pid = py.os_pid();
    auto copy = py;
    EXPECT_EQ(copy.eval("return 2")->as<int>(), 2);
  }
  EXPECT_TRUE(eventually([&] { return process_gone(pid); }));
  EXPECT_TRUE(eventually([] { return my_children().empty(); }));
}

TEST_F(lifecycle_test, runtime_destruction_stops_everything) {
  std::vector<int> pids;
  std::vector<interpreter> keep;
  for (int i = 0; i < 3; ++i) {
    keep.push_back(must_spawn(options()));
    pids.push_back(keep.back().os_pid());
  }
  rt_.reset();
  for (int pid : pids)
    EXPECT_TRUE(process_gone(pid)) << pid;
  // Handles that outlive the runtime fail cleanly.
  auto r = keep[0].eval("return 1");
  ASSERT_FALSE(r);
  EXPECT_TRUE(r.error().code == errc::interpreter_down || r.error().code == errc::interpreter_exited)
    << r.error().to_string();
}

TEST_F(lifecycle_test, state_and_metadata) {
  auto o = options();
  o.label = "meta";
  auto py = must_spawn(o);
  EXPECT_EQ(py.state(), interpreter_state::ready);
  EXPECT_EQ(py.label(), "meta");
  EXPECT_GT(py.os_pid(), 0);
  EXPECT_EQ(py.python_version().rfind("3.", 0), 0u) << py.python_version();
  auto pid = py.eval("import os\nreturn os.getpid()");
  EXPECT_EQ(pid->as<int>(), py.os_pid());
}
