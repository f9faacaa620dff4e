// Descendants that leave the interpreter's process group (setsid, double fork) and descendants
// left behind when the host itself dies: every one of them is killed (issue 7, defect 4).
#include <fcntl.h>
#include <sys/prctl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "support/bounded_call.hpp"
#include "support/fixture.hpp"
#include "support/helper_host.hpp"
#include "support/temp_files.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

// Helpers defined once in the root namespace. The forked children stay in Python (they do not
// exec), so they also hold every pipe the runner holds (fds 1..5), as a careless daemon would.
const char* const helpers = R"PY(
import os, time

def _sleep_forever(seconds):
    try:
        time.sleep(seconds)
    finally:
        os._exit(0)

def setsid_sleeper(seconds=60):
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
        finally:
            _sleep_forever(seconds)
    return pid

def double_fork(seconds=60):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(r)
            os.setsid()
            grandchild = os.fork()
            if grandchild == 0:
                os.close(w)
                _sleep_forever(seconds)
            os.write(w, str(grandchild).encode())
        finally:
            os._exit(0)
    os.close(w)
    data = b''
    while True:
        chunk = os.read(r, 64)
        if not chunk:
            break
        data += chunk
    os.close(r)
    os.waitpid(pid, 0)
    return int(data)
)PY";

class descendants_test : public runtime_test {
protected:
  interpreter_options with_helpers() {
    auto o = options();
    o.init_script = {helpers, {}};
    return o;
  }

  // Starts one setsid'd sleeper and one double-forked sleeper; returns their pids.
  std::vector<int> start_escapees(interpreter& py) {
    auto r = py.eval("return [setsid_sleeper(), double_fork()]");
    if (!r) {
      ADD_FAILURE() << r.error().to_string();
      return {};
    }
    auto pids = r->as<std::vector<int>>();
    for (int p : pids)
      started_.push_back(p);
    return pids;
  }

  // The guard: Python's parent (0 when Python is not found).
  static int guard_of(const interpreter& py) {
    for (auto& p : all_processes())
      if (p.pid == py.os_pid())
        return p.ppid;
    return 0;
  }

  static bool all_gone(const std::vector<int>& pids) {
    for (int p : pids)
      if (!process_gone(p))
        return false;
    return true;
  }

  static std::string describe(const std::vector<int>& pids) {
    std::string s;
    for (int p : pids)
      s += std::to_string(p) + (process_gone(p) ? " (gone) " : " (ALIVE) ");
    return s;
  }

  void TearDown() override {
    // Whatever a failed run left behind must not outlive the test for a minute. (Only after a
    // failure: once they were seen gone, their pids may belong to someone else.)
    if (HasFailure())
      for (int p : started_)
        if (!process_gone(p))
          ::kill(p, SIGKILL);
    runtime_test::TearDown();
  }

  std::vector<int> started_;
};

} // namespace

TEST_F(descendants_test, os_pid_is_the_python_process) {
  auto py = must_spawn(options());
  auto r = py.eval("import os\nreturn [os.getpid(), os.getpgrp()]");
  ASSERT_TRUE(r) << r.error().to_string();
  auto v = r->as<std::vector<int>>();
  EXPECT_EQ(v[0], py.os_pid());
  EXPECT_EQ(v[1], py.os_pid()) << "Python leads its own process group";
}

TEST_F(descendants_test, stop_kills_setsid_and_double_forked_descendants) {
  auto py = must_spawn(with_helpers());
  auto pids = start_escapees(py);
  ASSERT_EQ(pids.size(), 2u);
  EXPECT_FALSE(all_gone(pids)) << "the sleepers must be running before the stop";
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(py.stop());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(5s)) << "stop took too long";
  EXPECT_TRUE(eventually([&] { return all_gone(pids); }, 5s)) << describe(pids);
}

// The guard is a fork of the host that never execs, taken while other host threads run: it
// may call nothing that takes a lock one of them can hold at that moment (the allocator's,
// stdio's, a sanitizer runtime's thread registry, which creating or naming a thread takes).
// Host threads that are created, named and joined without pause hold such locks often; every
// start must still come up and every stop return. (Under ASan a guard that named itself with
// prctl(PR_SET_NAME) hung here within a few cycles: the interceptor takes that registry lock.)
TEST_F(descendants_test, starts_and_stops_while_host_threads_churn) {
  std::atomic<bool> done{false};
  std::atomic<long> churned{0};
  std::vector<std::thread> churners;
  for (int t = 0; t < 2; ++t)
    churners.emplace_back([&] {
      for (long i = 0; !done.load(); ++i) {
        ::prctl(PR_SET_NAME, (i & 1) != 0 ? "pv-churn-a" : "pv-churn-b");
        if (i % 64 == 0)
          std::thread([] { ::prctl(PR_SET_NAME, "pv-churn-c"); }).join();
        ++churned;
      }
    });
  struct stop_churn {
    std::atomic<bool>& done;
    std::vector<std::thread>& threads;
    ~stop_churn() {
      done = true;
      for (auto& t : threads)
        t.join();
    }
  } stopper{done, churners};
  auto o = options();
  o.no_site = true;
  for (int i = 0; i < 40; ++i) {
    auto py = rt_->spawn_interpreter(o);
    ASSERT_TRUE(py) << "cycle " << i << ": " << py.error().to_string();
    auto r = py->eval("return 1", {}, {.timeout = scaled(10s)});
    ASSERT_TRUE(r) << "cycle " << i << ": " << r.error().to_string();
    if (i == 0) {
      // The guard still names itself for ps and top.
      int guard = guard_of(*py);
      EXPECT_EQ(read_file("/proc/" + std::to_string(guard) + "/comm"), "pyvisor-guard\n")
        << "guard pid " << guard;
    }
    auto s = bounded("stop()", scaled(20s), [&] { return py->stop(); });
    ASSERT_TRUE(s) << "cycle " << i << ": " << s.error().to_string();
  }
  EXPECT_GT(churned.load(), 0) << "the churning threads never ran";
}

TEST_F(descendants_test, runtime_destruction_kills_escaped_descendants) {
  auto py = must_spawn(with_helpers());
  auto pids = start_escapees(py);
  ASSERT_EQ(pids.size(), 2u);
  rt_.reset();
  EXPECT_TRUE(eventually([&] { return all_gone(pids); }, 5s)) << describe(pids);
}

TEST_F(descendants_test, unexpected_exit_kills_escaped_descendants_and_keeps_the_exit_code) {
  auto py = must_spawn(with_helpers());
  auto pids = start_escapees(py);
  ASSERT_EQ(pids.size(), 2u);
  auto r = py.eval("import os\nos._exit(3)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited);
  EXPECT_NE(r.error().message.find("exited with code 3"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find(std::to_string(py.os_pid())), std::string::npos)
    << "the message names the Python pid: " << r.error().message;
  EXPECT_TRUE(eventually([&] { return all_gone(pids); }, 5s)) << describe(pids);
}

TEST_F(descendants_test, sigkill_of_python_kills_escaped_descendants_and_reports_the_signal) {
  auto py = must_spawn(with_helpers());
  auto pids = start_escapees(py);
  ASSERT_EQ(pids.size(), 2u);
  ::kill(py.os_pid(), SIGKILL);
  ASSERT_TRUE(eventually([&] { return py.state() == interpreter_state::stopped; }));
  auto r = py.eval("return 1");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited);
  EXPECT_NE(r.error().message.find("killed by signal 9 (SIGKILL)"), std::string::npos)
    << r.error().message;
  EXPECT_TRUE(eventually([&] { return all_gone(pids); }, 5s)) << describe(pids);
}

// The host dies by SIGKILL: a helper program (its own runtime and interpreter) starts a
// `sleep 30` with subprocess.Popen (in the runner's process group) and a setsid'd sleeper,
// prints their pids and the runner's, and is then killed by the test.
TEST_F(descendants_test, host_sigkill_kills_the_runner_and_every_descendant) {
  auto h = start_helper_host({PYVISOR_DESCENDANTS_HELPER, test_python()}, scaled(30s));
  ASSERT_GT(h.pid, 0) << "cannot start " << PYVISOR_DESCENDANTS_HELPER;
  pid_t host = h.pid;
  const auto& line = h.line;
  std::vector<int> pids = h.printed;
  for (int p : pids)
    started_.push_back(p);

  ::kill(host, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(host, &status, 0), host);
  ASSERT_EQ(pids.size(), 3u) << "helper printed: '" << line << "'";
  // pids: the Popen'd sleep, the setsid'd sleeper, the runner.
  EXPECT_TRUE(eventually([&] { return all_gone(pids); }, 5s)) << describe(pids);
}

// The guard is a copy of the host that never execs: without releasing its copy of the host's
// heap, every page the host rewrites afterwards would stay behind in the guard (copy-on-write),
// up to the host's heap per interpreter.
TEST_F(descendants_test, the_guard_does_not_keep_the_hosts_heap) {
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "the guard keeps the host's pages under ASan (its runtime lives in them)";
#else
  constexpr std::size_t size = std::size_t{256} << 20;
  std::vector<char> heap(size, 1);  // touched: resident in the host before the fork
  auto py = must_spawn(options());
  for (std::size_t i = 0; i < size; i += 4096)  // the host rewrites every page after the fork
    heap[i] = 2;
  int guard = guard_of(py);
  ASSERT_GT(guard, 0);
  long private_kib = -1;
  {
    std::ifstream sm("/proc/" + std::to_string(guard) + "/smaps_rollup");
    std::string key;
    long kib;
    std::string unit;
    std::string line;
    while (std::getline(sm, line)) {
      std::istringstream l(line);
      if (l >> key >> kib >> unit && (key == "Private_Dirty:")) {
        private_kib = kib;
        break;
      }
    }
  }
  ASSERT_GE(private_kib, 0) << "no smaps_rollup for the guard " << guard;
  EXPECT_LT(private_kib, 32 * 1024) << "the guard holds " << private_kib
                                    << " KiB of private pages (the host rewrote 256 MiB)";
  EXPECT_EQ(heap[size - 4096], 2);
#endif
}
