#pragma once

#include <csignal>
#include <sys/types.h>

namespace pyvisor::process {

// The guard (docs/architecture.md §5): the process Boost.Process forks does not exec. It
// becomes a child subreaper that forks the real Python child P and stays behind; when P exits,
// or the host dies, it kills P's process group and everything left in its subtree, reaps P
// last and exits with P's status. Everything here runs in a fork of a multi-threaded host:
// raw syscalls only, no allocation, no locks.

/// The guard's PR_SET_PDEATHSIG: the host died.
constexpr int guard_death_signal = SIGHUP;

/// The signals the guard waits for (blocked before its fork, collected with sigtimedwait).
void guard_signals(sigset_t* set);

/// The guard's life after the fork: writes P's pid to `pid_w`, then supervises P. Never
/// returns into Boost or host code.
[[noreturn]] void guard_main(pid_t python, int pid_w, pid_t host);

} // namespace pyvisor::process
