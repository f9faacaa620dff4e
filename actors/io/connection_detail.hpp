#pragma once

// Helpers shared by the files of io::connection (connection.cpp: attach and reading;
// connection_write.cpp: the output queue; connection_process.cpp: signals, stack dumps, exit).

#include <poll.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

namespace pyvisor::io {
class connection;
}

namespace pyvisor::io::detail {

// The connection whose input the I/O thread is handling right now: frames written to it from
// there (completions that send the next request, pipelined) are collected and leave in one
// writev when the read is done, instead of one write() each (connection_write.cpp).
inline thread_local const connection* batching = nullptr;

// glibc 2.36 knows the idtype only in <linux/wait.h>, which clashes with <sys/wait.h>.
constexpr auto p_pidfd = static_cast<idtype_t>(3);

// Through syscall(): glibc 2.36's <sys/pidfd.h> lacks C linkage for C++.
inline int pidfd_open(pid_t pid) {
  return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
}

inline int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

/// Whether `fd` is readable right now (and its poll events in `revents`).
inline bool readable_now(int fd, short* revents = nullptr) {
  if (fd < 0)
    return false;
  pollfd p{fd, POLLIN, 0};
  bool r = ::poll(&p, 1, 0) == 1;
  if (revents)
    *revents = p.revents;
  return r;
}

} // namespace pyvisor::io::detail
