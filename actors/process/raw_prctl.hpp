#pragma once

// prctl(2) through syscall(2), for code that runs in a fork of the multi-threaded host (the
// guard, and Python's process before exec): a sanitizer runtime intercepts the libc wrapper
// and, for some options (PR_SET_NAME in GCC 12's ASan), takes a lock of its own there, which
// another host thread may have held at the fork. Every argument is widened to the kernel's
// unsigned long here, not left to syscall(2)'s variadic arguments.

#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace pyvisor::process {

inline int raw_prctl(int option, unsigned long arg2, unsigned long arg3 = 0, unsigned long arg4 = 0,
                     unsigned long arg5 = 0) noexcept {
  return static_cast<int>(::syscall(SYS_prctl, option, arg2, arg3, arg4, arg5));
}

} // namespace pyvisor::process
