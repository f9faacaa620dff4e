#include "process/sandbox_support.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>

#include "process/identity.hpp"
#include "process/python_resolver.hpp"
#include "process/seccomp_filter.hpp"

namespace pyvisor::process {

namespace {

int wait_status(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return status;
}

/// Runs argv (no environment, stdin/stdout on /dev/null), bounded; returns "" when it exited
/// 0, else what went wrong with the first line of its stderr.
std::string run_probe(const std::vector<std::string>& argv) {
  int err[2];
  if (::pipe2(err, O_CLOEXEC) != 0)
    return std::string{"pipe2: "} + std::strerror(errno);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  char* envp[] = {nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, args[0], &fa, nullptr, args.data(), envp);
  posix_spawn_file_actions_destroy(&fa);
  ::close(err[1]);
  if (rc != 0) {
    ::close(err[0]);
    return "cannot run " + argv[0] + ": " + std::strerror(rc);
  }
  std::string text;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  bool timed_out = false;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now()).count();
    if (left <= 0) {
      timed_out = true;
      break;
    }
    pollfd p{err[0], POLLIN, 0};
    int r = ::poll(&p, 1, static_cast<int>(left));
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0) {
      timed_out = r == 0;
      break;
    }
    char buf[512];
    auto n = ::read(err[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    if (text.size() < 4096)
      text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(err[0]);
  if (timed_out)
    ::kill(pid, SIGKILL);
  int status = wait_status(pid);
  if (timed_out)
    return argv[0] + " did not finish within 10 s";
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return {};
  if (auto nl = text.find('\n'); nl != std::string::npos)
    text.resize(nl);
  std::string how = WIFEXITED(status) ? "exited with code " + std::to_string(WEXITSTATUS(status))
                                      : "was killed by signal " + std::to_string(WTERMSIG(status));
  return argv[0] + " " + how + (text.empty() ? "" : ": " + text);
}

/// A forked child (dropped to nobody when root: raw syscalls, it is a fork of a threaded host)
/// tries unshare(CLONE_NEWUSER).
std::string probe_userns() {
  for (const char* f : {"/proc/sys/kernel/unprivileged_userns_clone",
                        "/proc/sys/kernel/apparmor_restrict_unprivileged_userns"}) {
    std::ifstream in(f);
    int v = -1;
    if (in >> v) {
      bool clone_file = std::strstr(f, "clone") != nullptr;
      if ((clone_file && v == 0) || (!clone_file && v == 1))
        return std::string{"disabled by "} + f;
    }
  }
  pid_t pid = ::fork();
  if (pid < 0)
    return std::string{"fork: "} + std::strerror(errno);
  if (pid == 0) {
    if (::geteuid() == 0) {
      const gid_t none[1] = {65534};
      if (::syscall(SYS_setgroups, 1, none) != 0 ||
          ::syscall(SYS_setresgid, 65534, 65534, 65534) != 0 ||
          ::syscall(SYS_setresuid, 65534, 65534, 65534) != 0)
        ::_exit(2);
    }
    ::_exit(::unshare(CLONE_NEWUSER) == 0 ? 0 : 1);
  }
  int status = wait_status(pid);
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
    return {};
  if (WIFEXITED(status) && WEXITSTATUS(status) == 2)
    return "cannot drop to user nobody to try it";
  return "unshare(CLONE_NEWUSER) fails for an unprivileged user (user.max_user_namespaces, "
         "or a security module)";
}

std::string probe_seccomp() {
  if (::prctl(PR_GET_SECCOMP, 0, 0, 0, 0) < 0)
    return std::string{"prctl(PR_GET_SECCOMP): "} + std::strerror(errno) +
           " (a kernel without CONFIG_SECCOMP)";
  // With filter support, a null program is EFAULT; without, EINVAL. Nothing is installed.
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, nullptr, 0, 0) == 0 || errno != EFAULT)
    return "seccomp filters are not available (a kernel without CONFIG_SECCOMP_FILTER)";
  return {};
}

sandbox_support probe() {
  sandbox_support s;
  s.seccomp_error = probe_seccomp();
  s.seccomp = s.seccomp_error.empty();
  s.userns_error = probe_userns();
  s.userns = s.userns_error.empty();
  s.setsid_path = find_executable("setsid");
  s.bwrap_path = find_executable("bwrap");
  if (s.bwrap_path.empty() || s.bwrap_path[0] != '/') {
    s.bwrap_path.clear();
    s.bwrap_error = "bwrap is not installed (no executable 'bwrap' in PATH)";
    return s;
  }
  s.bwrap_error = run_probe({s.bwrap_path, "--ro-bind", "/", "/", "--unshare-pid",
                             "--unshare-ipc", "--unshare-uts", "--unshare-net", "--proc", "/proc",
                             "--dev", "/dev", "--die-with-parent", "--", "/bin/true"});
  s.bwrap = s.bwrap_error.empty();
  if (s.bwrap && (s.setsid_path.empty() || s.setsid_path[0] != '/')) {
    s.bwrap = false;
    s.bwrap_error = "setsid(1) (util-linux) is not installed";
  }
  return s;
}

bool absolute(const std::string& p) { return !p.empty() && p[0] == '/'; }

} // namespace

const sandbox_support& host_sandbox_support() {
  static const sandbox_support s = probe();
  return s;
}

expected<void> check_isolation(const isolation& iso) {
  const auto& l = iso.limits;
  if (l.memory && *l.memory < (std::uint64_t{1} << 20))  // as the config validator
    return make_error(errc::config_error, "limits.memory must be at least 1 MiB");
  if (l.cpu_seconds && (*l.cpu_seconds == 0 || *l.cpu_seconds > (std::uint64_t{1} << 40)))
    return make_error(errc::config_error, "limits.cpu_seconds must be positive");
  if (l.open_files && (*l.open_files < 16 || *l.open_files > (std::uint64_t{1} << 30)))
    return make_error(errc::config_error,
                      "limits.open_files must be at least 16 (the runner's own fds)");
  if (l.processes && *l.processes == 0)
    return make_error(errc::config_error, "limits.processes must be positive");

  if (!iso.identity.empty()) {
    auto what = !iso.identity.user.empty() ? "user '" + iso.identity.user + "'"
                                           : "group '" + iso.identity.group + "'";
    if (::geteuid() != 0)
      return make_error(errc::config_error,
                        "identity (" + what + ") needs the host to run as root");
    auto r = resolve_identity(iso.identity);
    if (!r)
      return r.error();
  }

  const auto& sb = iso.sandbox;
  if (sb.kind == sandbox_kind::none && (!sb.work_dir.empty() || !sb.read_only.empty()))
    return make_error(errc::config_error,
                      "sandbox.work_dir and sandbox.read_only need sandbox = \"bwrap\"");
  if (!sb.seccomp && !sb.deny.empty())
    return make_error(errc::config_error, "sandbox.deny needs seccomp = true");
  if (sb.kind == sandbox_kind::bwrap) {
    const auto& s = host_sandbox_support();
    if (!s.bwrap)
      return make_error(errc::config_error, "sandbox = \"bwrap\" needs bubblewrap: " + s.bwrap_error);
    if (!iso.identity.empty() && !s.userns)
      return make_error(errc::config_error,
                        "sandbox = \"bwrap\" with an identity needs unprivileged user "
                        "namespaces: " + s.userns_error);
    if (!sb.work_dir.empty() && !absolute(sb.work_dir))
      return make_error(errc::config_error,
                        "sandbox.work_dir must be an absolute path, not '" + sb.work_dir + "'");
    for (const auto& p : sb.read_only) {
      if (!absolute(p))
        return make_error(errc::config_error,
                          "sandbox.read_only paths must be absolute, not '" + p + "'");
      struct stat st;
      if (::stat(p.c_str(), &st) != 0)
        return make_error(errc::config_error, "sandbox.read_only path '" + p +
                                                "': " + std::strerror(errno));
    }
  }
  if (sb.seccomp) {
    const auto& s = host_sandbox_support();
    if (!s.seccomp)
      return make_error(errc::config_error, "sandbox.seccomp is not supported here: " + s.seccomp_error);
    if (auto names = check_syscall_names(sb.deny); !names)
      return names.error();
  }
  return {};
}

} // namespace pyvisor::process
