#pragma once

// A helper host program for tests that kill the host itself: started with its stdout on a
// pipe, it prints one line of pids once its interpreter is set up.

#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <unistd.h>

#include <chrono>
#include <sstream>
#include <string>
#include <vector>

extern char** environ;

namespace pyvisor::test {

struct helper_host {
  pid_t pid = -1;            ///< -1: it could not be started
  std::vector<int> printed;  ///< the numbers of its first line (empty on timeout or EOF)
  std::string line;          ///< that line, for messages
};

/// Starts `argv[0]` with `argv` and waits (bounded by `bound`) for its first line of numbers.
inline helper_host start_helper_host(std::vector<std::string> argv, std::chrono::milliseconds bound) {
  helper_host h;
  int out[2];
  if (::pipe2(out, O_CLOEXEC) != 0)
    return h;
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  std::vector<char*> args;
  for (auto& a : argv)
    args.push_back(a.data());
  args.push_back(nullptr);
  int rc = ::posix_spawn(&h.pid, argv[0].c_str(), &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  ::close(out[1]);
  if (rc != 0) {
    ::close(out[0]);
    h.pid = -1;
    return h;
  }
  auto deadline = std::chrono::steady_clock::now() + bound;
  while (h.line.find('\n') == std::string::npos && std::chrono::steady_clock::now() < deadline) {
    pollfd p{out[0], POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0)
      continue;
    char buf[256];
    auto n = ::read(out[0], buf, sizeof buf);
    if (n <= 0)
      break;
    h.line.append(buf, static_cast<std::size_t>(n));
  }
  ::close(out[0]);
  std::istringstream in(h.line);
  for (int p; in >> p;)
    h.printed.push_back(p);
  return h;
}

} // namespace pyvisor::test
