#pragma once

// `pyvisor serve CONFIG` as a child process of the test (docs/http.md): its own process group,
// stdin /dev/null, stdout and stderr to files (no pipe to drain, no deadlock), the ready line's
// port, signals, a bounded wait for its exit, and its descendants as /proc shows them.

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "support/leak_audit.hpp"
#include "support/temp_files.hpp"

extern char** environ;

namespace pyvisor::daemon_test {

using namespace std::chrono_literals;
using pyvisor::test::scaled;
using pyvisor::test::temp_dir;
using pyvisor::test::read_file;

inline const std::string pyvisor_program = PYVISOR_CLI;

inline void write_text(const std::string& path, const std::string& text) {
  // Written beside and renamed: a reload never reads a half-written file.
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
  }
  std::filesystem::rename(tmp, path);
}


/// Every process below `root` (children, grandchildren, ...), from /proc.
inline std::vector<int> descendants_of(int root) {
  std::multimap<int, int> children;
  for (auto& p : pyvisor::test::all_processes())
    children.emplace(p.ppid, p.pid);
  std::vector<int> out;
  std::vector<int> todo{root};
  while (!todo.empty()) {
    const int p = todo.back();
    todo.pop_back();
    auto [b, e] = children.equal_range(p);
    for (auto i = b; i != e; ++i) {
      out.push_back(i->second);
      todo.push_back(i->second);
    }
  }
  return out;
}

inline bool is_descendant(int root, int pid) {
  for (int d : descendants_of(root))
    if (d == pid)
      return true;
  return false;
}

/// "pid (cmdline)" for failure messages.
inline std::string describe_pid(int pid) {
  std::string cmd = read_file("/proc/" + std::to_string(pid) + "/cmdline");
  for (char& c : cmd)
    if (c == '\0')
      c = ' ';
  return std::to_string(pid) + " (" + cmd + ")";
}

/// A running program whose stdout and stderr go to files in `dir`.
class child_process {
public:
  child_process() = default;
  child_process(const child_process&) = delete;
  child_process& operator=(const child_process&) = delete;
  ~child_process() {
    if (pid_ > 0) {  // a test that failed before stopping it: no process outlives the test
      ::kill(pid_, SIGKILL);
      int ws = 0;
      ::waitpid(pid_, &ws, 0);
    }
  }

  /// Starts `pyvisor args...` in a process group of its own; "" or why it could not start.
  std::string start(const std::vector<std::string>& args, const std::string& out_path,
                    const std::string& err_path) {
    out_ = out_path;
    err_ = err_path;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&fa, 1, out_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&fa, 2, err_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    sigset_t none, defaults;
    sigemptyset(&none);
    sigemptyset(&defaults);
    for (int s : {SIGTERM, SIGINT, SIGHUP, SIGPIPE, SIGCHLD})
      sigaddset(&defaults, s);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setsigdefault(&at, &defaults);
    posix_spawnattr_setpgroup(&at, 0);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK |
                                    POSIX_SPAWN_SETSIGDEF);
    std::vector<std::string> all{pyvisor_program};
    all.insert(all.end(), args.begin(), args.end());
    std::vector<char*> argv;
    for (auto& a : all)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    const int rc = ::posix_spawn(&pid_, pyvisor_program.c_str(), &fa, &at, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (rc != 0) {
      pid_ = -1;
      return "posix_spawn " + pyvisor_program + ": error " + std::to_string(rc);
    }
    return {};
  }

  int pid() const noexcept { return pid_; }
  bool running() const noexcept { return pid_ > 0; }
  std::string out() const { return read_file(out_); }
  std::string err() const { return read_file(err_); }
  void signal(int sig) const {
    if (pid_ > 0)
      ::kill(pid_, sig);
  }

  /// Exit status (or 128+signal) if it ended within `bound`; reaps it.
  std::optional<int> wait_exit(std::chrono::milliseconds bound) {
    const auto until = std::chrono::steady_clock::now() + bound;
    for (;;) {
      if (auto s = poll_exit())
        return s;
      if (std::chrono::steady_clock::now() >= until)
        return std::nullopt;
      std::this_thread::sleep_for(5ms);
    }
  }

  /// Exit status if it ended (reaped), nothing while it runs.
  std::optional<int> poll_exit() {
    if (pid_ <= 0)
      return status_;
    int ws = 0;
    const pid_t r = ::waitpid(pid_, &ws, WNOHANG);
    if (r != pid_)
      return std::nullopt;
    pid_ = -1;
    status_ = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
    return status_;
  }

private:
  pid_t pid_ = -1;
  std::optional<int> status_;
  std::string out_, err_;
};

} // namespace pyvisor::daemon_test
