#pragma once

#include <linux/filter.h>
#include <string>
#include <vector>

#include "pyvisor/expected.hpp"

namespace pyvisor::process {

/// A compiled seccomp-bpf program (libseccomp, exported as raw BPF): every syscall is allowed
/// except the denied ones, which fail with EPERM. Syscalls of another ABI than the host's
/// (i386 or x32 on x86_64) kill the thread (libseccomp's default for a foreign arch).
struct seccomp_program {
  std::vector<sock_filter> code;
};

/// Compiles the filter for `deny` (empty: default_seccomp_deny()). A name the host's ABI does
/// not know is a config_error naming it (names of default_seccomp_deny() that this ABI lacks
/// are skipped: they cannot be called).
expected<seccomp_program> compile_seccomp(const std::vector<std::string>& deny);

/// Checks the names only (config_error naming the first unknown one).
expected<void> check_syscall_names(const std::vector<std::string>& deny);

/// A memfd (O_CLOEXEC, offset 0) holding the program, for `bwrap --seccomp FD`; -1 with errno.
int seccomp_memfd(const seccomp_program& p);

} // namespace pyvisor::process
