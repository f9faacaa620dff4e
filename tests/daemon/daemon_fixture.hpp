#pragma once

// The fixture of the daemon's tests: writes a config into a temp dir, starts `pyvisor serve` on
// it (127.0.0.1:0, the port from the ready line), and at the end stops it with SIGTERM, expects
// exit 0 within a bound and checks that no process of its tree is left. The test process is a
// child subreaper, so anything the daemon leaves behind becomes our child and is seen. On
// failure the daemon's stderr is printed.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>

#include <algorithm>
#include <iostream>
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "daemon_process.hpp"
#include "http_client.hpp"

namespace pyvisor::daemon_test {

/// The [runtime] and [gateway] tables every test's config starts with, then `rest` (tenants,
/// pools). 127.0.0.1:0: a free port, named by the ready line.
inline std::string make_config(const std::string& rest, const std::string& runtime_extra = {},
                               const std::string& gateway_extra = {}) {
  return "[runtime]\n"
         "http_listen = \"127.0.0.1:0\"\n"
         "shutdown_grace = \"10s\"\n" +
         runtime_extra + "\n[gateway]\n" + gateway_extra + "\n" + rest;
}

/// A tenant running /usr/bin/python3.
inline std::string tenant_toml(const std::string& name) {
  return "[tenants." + name + "]\npython = \"/usr/bin/python3\"\n\n";
}

/// A pool of tenant `tenant` with `size` workers (and `extra` keys).
inline std::string pool_toml(const std::string& name, int size, const std::string& tenant = "main",
                             const std::string& extra = {}) {
  return "[pools." + name + "]\ntenant = \"" + tenant + "\"\nsize = " + std::to_string(size) +
         "\n" + extra + "\n";
}

/// One tenant "main" with pool "default" of `size` workers.
inline std::string default_pool(int size = 2) {
  return tenant_toml("main") + pool_toml("default", size);
}

/// The stderr's last `n` characters.
inline std::string tail(const std::string& s, std::size_t n = 20000) {
  return s.size() <= n ? s : "[...]" + s.substr(s.size() - n);
}

class DaemonTest : public ::testing::Test {
protected:
  void SetUp() override {
    ::signal(SIGPIPE, SIG_IGN);
    // Orphans of the daemon's tree become our children: a leftover process cannot hide.
    ASSERT_EQ(::prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
  }

  void TearDown() override {
    if (daemon_.running())
      stop_daemon();
    if (HasFailure())
      std::cerr << "--- daemon stdout:\n" << stdout_text() << "--- daemon stderr:\n"
                << tail(stderr_text()) << "--- end of daemon output\n";
  }

  /// Writes the config and starts the daemon; false (with a failure recorded) unless it
  /// printed its ready line within the bound. Use as ASSERT_TRUE(start(...)).
  bool start(const std::string& config_text) {
    write_text(config_path(), config_text);
    const std::string why =
      daemon_.start({"serve", config_path()}, dir_ / "stdout", dir_ / "stderr");
    if (!why.empty()) {
      ADD_FAILURE() << why;
      return false;
    }
    const auto until = std::chrono::steady_clock::now() + scaled(30s);
    static const std::regex ready{R"(pyvisor: ready on http://127\.0\.0\.1:(\d+) \(pools: .*\)\n)"};
    for (;;) {
      std::smatch m;
      const std::string out = daemon_.out();
      if (std::regex_search(out, m, ready)) {
        port_ = std::stoi(m[1]);
        ready_line_ = m[0];
        return true;
      }
      if (auto st = daemon_.poll_exit()) {
        ADD_FAILURE() << "pyvisor serve exited with " << *st << " before its ready line";
        return false;
      }
      if (std::chrono::steady_clock::now() >= until) {
        ADD_FAILURE() << "no ready line within " << scaled(30s).count() << " ms";
        return false;
      }
      std::this_thread::sleep_for(5ms);
    }
  }

  /// SIGTERM; expects exit 0 within `bound` and no process of the daemon's tree left (every
  /// process below it now, and every pid the test noted, gone). Returns the exit status.
  int stop_daemon(std::chrono::milliseconds bound = 30s) {
    std::vector<int> tree = descendants_of(daemon_.pid());
    tree.insert(tree.end(), noted_pids_.begin(), noted_pids_.end());
    daemon_.signal(SIGTERM);
    return finish_stop(tree, bound);
  }

  /// After a stop signal was sent: the rest of stop_daemon() (tree: pids to see gone).
  int finish_stop(std::vector<int> tree, std::chrono::milliseconds bound = 30s) {
    const auto st = daemon_.wait_exit(scaled(bound));
    EXPECT_TRUE(st.has_value()) << "pyvisor serve did not exit within " << scaled(bound).count()
                                << " ms of SIGTERM";
    if (!st) {
      for (int p : descendants_of(daemon_.pid()))
        tree.push_back(p);
      daemon_.signal(SIGKILL);
      (void)daemon_.wait_exit(scaled(10s));
    } else {
      EXPECT_EQ(*st, 0) << "pyvisor serve's exit status after SIGTERM";
    }
    expect_no_leftovers(tree);
    return st.value_or(-1);
  }

  /// No child of ours left (the subreaper catches the daemon's orphans) and every pid of
  /// `tree` gone; kills (by pid) and reaps whatever is left so nothing outlives the test.
  void expect_no_leftovers(const std::vector<int>& tree) {
    const auto reap = [] {
      int ws = 0;
      while (::waitpid(-1, &ws, WNOHANG) > 0) {
      }
    };
    const auto left = [&] {
      reap();
      std::set<int> out;
      for (auto& p : pyvisor::test::my_children())
        if (p.state != 'Z')
          out.insert(p.pid);
      for (int p : tree)
        if (!pyvisor::test::process_gone(p))
          out.insert(p);
      return out;
    };
    const bool clean = pyvisor::test::eventually([&] { return left().empty(); }, 5s);
    if (!clean) {
      std::string list;
      for (int p : left())
        list += describe_pid(p) + "; ";
      ADD_FAILURE() << "processes of the daemon's tree are left after it exited: " << list;
      for (int p : left())
        if (is_descendant(::getpid(), p))  // ours (reparented to us), never anyone else's
          ::kill(p, SIGKILL);
      (void)pyvisor::test::eventually([&] { return left().empty(); }, 5s);
    }
  }

  /// Rewrites the config (for a reload).
  void rewrite_config(const std::string& text) { write_text(config_path(), text); }
  void signal_daemon(int sig) { daemon_.signal(sig); }

  /// SIGKILLs `pid`, which must be a process of the daemon's tree.
  void kill_worker(int pid) {
    ASSERT_GT(pid, 0);
    ASSERT_TRUE(is_descendant(daemon_.pid(), pid)) << pid << " is not below the daemon";
    ASSERT_EQ(::kill(pid, SIGKILL), 0);
  }

  gateway_client client(const std::string& token = {}) { return gateway_client(port_, token); }

  /// GET /v1/status (with the admin token if one is set); the document, or null.
  json status() {
    auto r = client(admin_token_).get("/v1/status");
    EXPECT_EQ(r.status, 200) << r.describe();
    return r.status == 200 ? r.doc : json{};
  }

  /// The pool's entry of /v1/status, or null.
  json pool_status(const std::string& pool) {
    json s = status();
    if (s.is_object())
      for (auto& p : s["pools"])
        if (p["name"] == pool)
          return p;
    return json{};
  }

  /// The pids of the pool's workers (noted for the leftover check).
  std::vector<int> worker_pids(const std::string& pool) {
    std::vector<int> out;
    json p = pool_status(pool);
    if (p.is_object())
      for (auto& w : p["per_worker"])
        if (w["pid"].is_number_integer() && w["pid"].get<int>() > 0)
          out.push_back(w["pid"].get<int>());
    std::sort(out.begin(), out.end());
    for (int pid : out)
      note_pid(pid);
    return out;
  }

  std::string metrics() {
    auto r = client(admin_token_).get("/metrics");
    EXPECT_EQ(r.status, 200) << r.describe();
    return r.body;
  }

  void note_pid(int pid) {
    if (std::find(noted_pids_.begin(), noted_pids_.end(), pid) == noted_pids_.end())
      noted_pids_.push_back(pid);
  }

  /// Waits (bounded, scaled) until `pred` holds.
  template <class Pred>
  static bool eventually(Pred pred, std::chrono::milliseconds bound = 20s) {
    return pyvisor::test::eventually(pred, bound);
  }

  std::string config_path() const { return dir_ / "pyvisor.toml"; }
  std::string path(const std::string& name) const { return dir_ / name; }
  std::string stderr_text() const { return read_file(dir_ / "stderr"); }
  std::string stdout_text() const { return read_file(dir_ / "stdout"); }
  int daemon_pid() const { return daemon_.pid(); }
  bool daemon_running() const { return daemon_.running(); }

  temp_dir dir_;
  child_process daemon_;
  int port_ = 0;
  std::string ready_line_;
  std::string admin_token_;  ///< sent by status() and metrics() when set
  std::vector<int> noted_pids_;
};

/// Milliseconds since `t0`.
inline long long ms_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
    .count();
}

} // namespace pyvisor::daemon_test
