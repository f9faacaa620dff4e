#pragma once

// `pyvisor serve CONFIG` for the client commands' tests: writes the config into a temp dir,
// starts the daemon in a process group of its own with its stdout on a pipe, waits (poll, with
// a bound) for the ready line `pyvisor: ready on URL (pools: ...)` and keeps its URL; stop()
// sends SIGTERM and waits (a pidfd, with a bound) for the exit status. A daemon still running
// when the object goes away is killed with its group.

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <iostream>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include "cli_test_util.hpp"

namespace pyvisor::cli_test {

using namespace std::chrono_literals;

/// Whether `s` holds `part`.
inline bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

/// The [runtime] table of a test daemon (a free loopback port), `gateway` as [gateway]'s
/// keys, then `rest` (tenants and pools).
inline std::string daemon_config(const std::string& rest, const std::string& gateway = {}) {
  return "[runtime]\nhttp_listen = \"127.0.0.1:0\"\nshutdown_grace = \"10s\"\n\n[gateway]\n" +
         gateway + "\n" + rest;
}

/// Tenant "main" on /usr/bin/python3 with pool "default" of `size` workers.
inline std::string default_pools(int size = 2) {
  return "[tenants.main]\npython = \"/usr/bin/python3\"\n\n[pools.default]\ntenant = \"main\"\n"
         "size = " + std::to_string(size) + "\n";
}

class daemon_process {
public:
  daemon_process() = default;
  daemon_process(const daemon_process&) = delete;
  daemon_process& operator=(const daemon_process&) = delete;
  ~daemon_process() {
    if (pid_ > 0) {
      ::kill(-pid_, SIGKILL);
      int ws = 0;
      ::waitpid(pid_, &ws, 0);
    }
    if (out_ >= 0) ::close(out_);
  }

  /// Starts `pyvisor serve` on `config_text`; "" once it printed its ready line within
  /// `bound`, else why not.
  std::string start(const std::string& config_text, std::chrono::milliseconds bound = 60s) {
    write_file(dir_ / "pyvisor.toml", config_text);
    int fds[2];
    if (::pipe2(fds, O_CLOEXEC) != 0) return "pipe2 failed";
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_addopen(&fa, 2, (dir_ / "stderr").c_str(),
                                     O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    std::vector<std::string> all{program, "serve", dir_ / "pyvisor.toml"};
    std::vector<char*> argv;
    for (std::string& a : all) argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, program.c_str(), &fa, &at, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    ::close(fds[1]);
    out_ = fds[0];
    if (rc != 0) {
      pid_ = -1;
      return "posix_spawn failed: " + std::to_string(rc);
    }
    static const std::regex ready{R"(pyvisor: ready on (https?://127\.0\.0\.1:\d+) \(pools: .*\)\n)"};
    const auto until = std::chrono::steady_clock::now() + bound;
    for (;;) {
      std::smatch m;
      if (std::regex_search(stdout_, m, ready)) {
        url_ = m[1];
        return {};
      }
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          until - std::chrono::steady_clock::now());
      if (left <= 0ms) return "no ready line within " + std::to_string(bound.count()) + " ms";
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) < 0 && errno != EINTR) return "poll failed";
      if (p.revents == 0) continue;
      char buf[4096];
      const ssize_t n = ::read(out_, buf, sizeof buf);
      if (n <= 0) return "pyvisor serve closed its stdout before its ready line";
      stdout_.append(buf, static_cast<std::size_t>(n));
    }
  }

  /// SIGTERM, then its exit status if it exited within `bound` (reaped).
  std::optional<int> stop(std::chrono::milliseconds bound = 60s) {
    if (pid_ <= 0) return std::nullopt;
    // glibc 2.36 declares pidfd_open without extern "C": the system call itself.
    const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0));
    ::kill(pid_, SIGTERM);
    if (fd >= 0) {
      pollfd p{fd, POLLIN, 0};
      int rc;
      while ((rc = ::poll(&p, 1, static_cast<int>(bound.count()))) < 0 && errno == EINTR) {
      }
      ::close(fd);
      if (rc == 0) return std::nullopt;  // still running: the destructor kills it
    }
    int ws = 0;
    while (::waitpid(pid_, &ws, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
    return WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  }

  /// The base URL of its ready line.
  const std::string& url() const noexcept { return url_; }
  const temp_dir& dir() const noexcept { return dir_; }
  std::string stderr_text() const { return read_file(dir_ / "stderr"); }

private:
  temp_dir dir_;
  pid_t pid_ = -1;
  int out_ = -1;
  std::string stdout_;
  std::string url_;
};

/// A test with a daemon: start() in the test, stopped (exit 0 expected) at teardown; its
/// stderr is shown when the test failed.
class DaemonCliTest : public ::testing::Test {
protected:
  void TearDown() override {
    if (started_) {
      const auto st = daemon_.stop();
      EXPECT_EQ(st, std::optional<int>(0)) << "pyvisor serve did not exit 0 after SIGTERM";
    }
    if (HasFailure()) {
      std::cerr << "--- pyvisor serve's stderr:\n" << daemon_.stderr_text() << "--- end\n";
    }
  }

  /// Use as ASSERT_TRUE(start(...)).
  ::testing::AssertionResult start(const std::string& config_text) {
    const std::string why = daemon_.start(config_text);
    if (!why.empty()) return ::testing::AssertionFailure() << why;
    started_ = true;
    return ::testing::AssertionSuccess();
  }

  const std::string& url() const { return daemon_.url(); }
  const temp_dir& dir() const { return daemon_.dir(); }

  /// `pyvisor args... --connect URL`.
  run_result client(std::vector<std::string> args, const std::string& input = {}) {
    args.push_back("--connect");
    args.push_back(url());
    return pyvisor(args, input);
  }

private:
  daemon_process daemon_;
  bool started_ = false;
};

} // namespace pyvisor::cli_test
