#pragma once

/// Process isolation of one interpreter (interpreter_options::isolation): resource limits,
/// identity and an optional sandbox, applied to the Python process between fork and exec.
/// A tenant (pyvisor/runtime_spec.hpp) is a bundle of these plus an interpreter and an
/// environment policy. The threat model is in the README ("Tenants and isolation").

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace pyvisor {

/// setrlimit(2) limits of the Python process (soft = hard, except cpu_seconds: hard = soft + 1,
/// so SIGXCPU comes first). Unset: inherited from the host.
/// Exits a limit causes are reported as such in the exit reason ("memory limit", "cpu limit",
/// "file size limit"), distinct from crashes and timeouts.
struct resource_limits {
  std::optional<std::uint64_t> memory;       ///< RLIMIT_AS, bytes of address space
  std::optional<std::uint64_t> cpu_seconds;  ///< RLIMIT_CPU (SIGXCPU, then SIGKILL 1 s later)
  std::optional<std::uint64_t> open_files;   ///< RLIMIT_NOFILE
  std::optional<std::uint64_t> file_size;    ///< RLIMIT_FSIZE, bytes of one file
  /// RLIMIT_NPROC: processes (threads count) of the *user* the process runs as; meaningful
  /// with a dedicated `identity`, since root ignores it.
  std::optional<std::uint64_t> processes;
  std::optional<std::uint64_t> core = 0;     ///< RLIMIT_CORE: no core dumps by default

  bool any() const {
    return memory || cpu_seconds || open_files || file_size || processes || core;
  }
  friend bool operator==(const resource_limits&, const resource_limits&) = default;
};

/// Who the Python process runs as: a user and group name or number. Needs the host to run as
/// root (setgroups -> setgid -> setuid, then PR_SET_NO_NEW_PRIVS); refused with config_error
/// otherwise. Empty: the host's identity. A user without a group runs with the user's primary
/// group and supplementary groups.
struct identity {
  std::string user;
  std::string group;

  bool empty() const { return user.empty() && group.empty(); }
  friend bool operator==(const identity&, const identity&) = default;
};

/// Which sandbox wraps the Python process.
enum class sandbox_kind : std::uint8_t {
  none,   ///< only rlimits, identity, environment and fd hygiene
  bwrap,  ///< bubblewrap: namespaces, read-only system, private work dir and /tmp
};

/// The sandbox (opt in). With `bwrap`: the system directories (/usr, /bin, /lib*, /etc, ...)
/// and the paths the interpreter needs (its Python, venv, runner) are mounted read-only, `work_dir`
/// read-write (and the working directory), /tmp is private, the process has its own PID, IPC,
/// UTS and (unless `network`) network namespace, and dies with its parent. The syscall filter
/// works with or without bwrap.
struct sandbox_policy {
  sandbox_kind kind = sandbox_kind::none;
  /// bwrap: keep the host's network (default: a private network namespace with only lo).
  bool network = false;
  /// bwrap: the private writable directory (created if missing, owned by `identity`); empty:
  /// none (only the private /tmp is writable).
  std::string work_dir;
  /// bwrap: extra host paths mounted read-only at the same place.
  std::vector<std::string> read_only;
  /// A seccomp filter that makes the syscalls in `deny` fail with EPERM.
  bool seccomp = false;
  /// Syscall names denied by the filter; empty: default_seccomp_deny().
  std::vector<std::string> deny;
  friend bool operator==(const sandbox_policy&, const sandbox_policy&) = default;
};

/// The documented default deny list: ptrace, process_vm_readv/writev, mount, umount2,
/// pivot_root, swapon, swapoff, reboot, kexec_load, kexec_file_load, init_module,
/// finit_module, delete_module, bpf, perf_event_open, userfaultfd, keyctl, add_key,
/// request_key, unshare, setns, acct, quotactl, open_by_handle_at, name_to_handle_at.
const std::vector<std::string>& default_seccomp_deny();

/// Everything that isolates one interpreter process.
struct isolation {
  resource_limits limits;
  pyvisor::identity identity;
  sandbox_policy sandbox;
  friend bool operator==(const isolation&, const isolation&) = default;
};

} // namespace pyvisor
