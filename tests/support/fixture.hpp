#pragma once

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <vector>

#include "process/spawn.hpp"
#include "pyvisor/runtime.hpp"
#include "support/leak_audit.hpp"

namespace pyvisor::test {

using namespace std::chrono_literals;

/// The interpreter under test: PYVISOR_TEST_PYTHON (ctest sets it), else python3.
inline std::string test_python() {
  const char* p = std::getenv("PYVISOR_TEST_PYTHON");
  return p != nullptr && *p != '\0' ? p : "python3";
}

struct captured_line {
  std::string label;
  int pid;
  log_source source;
  std::string line;
  std::uint64_t request_id = 0;
};

/// A runtime per test, a log sink that records every line, and the leak audit at the end.
class runtime_test : public ::testing::Test {
protected:
  void SetUp() override {
    process::reserve_low_fds();  // the runtime does it too; before the fd snapshot
    // Process-wide state created once (libuv's global signal lock pipe, CAF's singletons) is
    // not a leak: create it before the snapshot.
    static bool warmed = [] {
      runtime warm{runtime_options{.log = {}}};
      return true;
    }();
    (void) warmed;
    fds_before_ = open_fds();
    runtime_options o;
    o.log = [this](const log_record& r) {
      std::lock_guard<std::mutex> g{log_mu_};
      logs_.push_back({std::string{r.label}, r.pid, r.source, std::string{r.line}, r.request_id});
    };
    rt_.emplace(std::move(o));
  }

  void TearDown() override {
    rt_.reset();  // stops every interpreter still running
    EXPECT_TRUE(eventually([] { return my_children().empty(); }))
      << "a child process of the test is left";
    for (int pgid : pgids_)
      EXPECT_TRUE(eventually([&] { return live_in_group(pgid).empty(); }))
        << "process group " << pgid << " still has live processes";
    auto after = open_fds();
    EXPECT_EQ(after, fds_before_) << "fds before: " << describe_fds(fds_before_)
                                  << "\nfds after: " << describe_fds(after);
  }

  interpreter_options options() {
    interpreter_options o;
    o.python = test_python();
    return o;
  }

  /// Spawns and remembers the process group for the audit.
  expected<interpreter> spawn(interpreter_options o) {
    auto r = rt_->spawn_interpreter(std::move(o));
    if (r && r->os_pid() > 0)
      pgids_.push_back(r->os_pid());
    return r;
  }

  interpreter must_spawn(interpreter_options o) {
    auto r = spawn(std::move(o));
    if (!r)
      throw std::runtime_error("spawn failed: " + r.error().to_string());  // fails this test
    return *r;
  }

  void track_pid(int pid) {
    if (pid > 0)
      pgids_.push_back(pid);
  }

  /// A path for code under test to create once it runs (see wait_file).
  static std::string marker(const std::string& tag) {
    return "/tmp/pyvisor-test-" + tag + "-" + std::to_string(::getpid());
  }

  /// Waits (bounded) until `path` exists (the code under test created it), then removes it.
  static bool wait_file(const std::string& path) {
    bool ok = eventually([&] { return std::ifstream(path).good(); });
    std::remove(path.c_str());
    return ok;
  }

  std::vector<captured_line> logs() {
    std::lock_guard<std::mutex> g{log_mu_};
    return logs_;
  }

  /// Waits (bounded) until a log line satisfies `pred`.
  template <class Pred>
  bool wait_log(Pred pred, std::chrono::milliseconds bound = 10s) {
    return eventually(
      [&] {
        std::lock_guard<std::mutex> g{log_mu_};
        return std::any_of(logs_.begin(), logs_.end(), pred);
      },
      bound);
  }

  std::optional<runtime> rt_;

private:
  std::set<int> fds_before_;
  std::vector<int> pgids_;
  std::mutex log_mu_;
  std::vector<captured_line> logs_;
};

} // namespace pyvisor::test
