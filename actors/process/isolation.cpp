#include "process/isolation.hpp"
#include "process/raw_prctl.hpp"

#include <cerrno>
#include <csignal>
#include <cstring>
#include <linux/seccomp.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <filesystem>
#include <system_error>

namespace pyvisor::process {

isolation_plan::~isolation_plan() {
  if (memfd_ >= 0)
    ::close(memfd_);
}

namespace {

rlimit both(std::uint64_t v) {
  auto r = static_cast<rlim_t>(v);
  return rlimit{r, r};
}

/// Creates the work dir when missing: 0700, owned by the identity. An existing one is left as
/// it is (it may be the previous process's, or a directory the configuration names on purpose).
expected<void> make_work_dir(const std::string& dir, const resolved_identity& id) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (!S_ISDIR(st.st_mode))
      return make_error(errc::spawn_failed, "sandbox.work_dir '" + dir + "' is not a directory");
    return {};
  }
  std::error_code ec;
  auto parent = std::filesystem::path{dir}.parent_path();
  if (!parent.empty())
    std::filesystem::create_directories(parent, ec);
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST)
    return make_error(errc::spawn_failed,
                      "cannot create sandbox.work_dir '" + dir + "': " + std::strerror(errno));
  ::chmod(dir.c_str(), 0700);  // whatever the umask
  if (id.set_user || id.set_group) {
    uid_t uid = id.set_user ? id.uid : static_cast<uid_t>(-1);
    gid_t gid = id.set_group ? id.gid : static_cast<gid_t>(-1);
    if (::chown(dir.c_str(), uid, gid) != 0)
      return make_error(errc::spawn_failed,
                        "cannot give sandbox.work_dir '" + dir + "' to " + id.describe + ": " +
                          std::strerror(errno));
  }
  return {};
}

} // namespace

expected<std::unique_ptr<isolation_plan>> prepare_isolation(const isolation& iso) {
  auto plan = std::make_unique<isolation_plan>();
  auto& c = plan->child;
  const auto& l = iso.limits;
  auto add = [&c](int resource, rlimit v) { c.limits[c.n_limits++] = {resource, v}; };
  if (l.memory)
    add(RLIMIT_AS, both(*l.memory));
  if (l.cpu_seconds)  // SIGXCPU at the soft limit, SIGKILL a second later
    add(RLIMIT_CPU, rlimit{static_cast<rlim_t>(*l.cpu_seconds),
                           static_cast<rlim_t>(*l.cpu_seconds + 1)});
  if (l.file_size)
    add(RLIMIT_FSIZE, both(*l.file_size));
  if (l.processes)
    add(RLIMIT_NPROC, both(*l.processes));
  if (l.core)
    add(RLIMIT_CORE, both(*l.core));
  if (l.open_files) {
    c.has_nofile = true;
    c.nofile = both(*l.open_files);
  }

  auto id = resolve_identity(iso.identity);
  if (!id)
    return std::move(id).error();
  plan->ident = std::move(*id);
  const auto& ident = plan->ident;
  c.set_groups = ident.set_group;
  c.set_uid = ident.set_user;
  c.uid = ident.uid;
  c.gid = ident.gid;
  c.groups = ident.groups.data();
  c.n_groups = ident.groups.size();

  const auto& sb = iso.sandbox;
  bool bwrap = sb.kind == sandbox_kind::bwrap;
  c.no_new_privs = !iso.identity.empty() || sb.seccomp;
  if (sb.seccomp) {
    auto prog = compile_seccomp(sb.deny);
    if (!prog)
      return std::move(prog).error();
    plan->program_ = std::move(*prog);
    if (bwrap) {
      // bwrap installs it on the sandboxed process: a filter denying mount or unshare would
      // stop bwrap itself.
      plan->memfd_ = seccomp_memfd(plan->program_);
      if (plan->memfd_ < 0)
        return make_error(errc::spawn_failed,
                          std::string{"seccomp: memfd for bwrap: "} + std::strerror(errno));
      c.seccomp_fd_src = plan->memfd_;
    } else {
      plan->fprog_.len = static_cast<unsigned short>(plan->program_.code.size());
      plan->fprog_.filter = plan->program_.code.data();
      c.filter = &plan->fprog_;
    }
  }
  if (bwrap && !sb.work_dir.empty())
    if (auto w = make_work_dir(sb.work_dir, ident); !w)
      return w.error();
  return plan;
}

const char* apply_isolation(const child_isolation& c, pid_t parent) noexcept {
  for (int i = 0; i < c.n_limits; ++i)
    if (::setrlimit(c.limits[i].resource, &c.limits[i].value) != 0)
      return "setrlimit";
  if (c.has_nofile && ::setrlimit(RLIMIT_NOFILE, &c.nofile) != 0)
    return "setrlimit(RLIMIT_NOFILE)";
  // Raw syscalls: glibc's set*id would try to synchronise the host's other threads, which do
  // not exist in this fork; prctl too, as everywhere after the fork (raw_prctl.hpp).
  if (c.set_groups) {
    if (::syscall(SYS_setgroups, c.n_groups, c.groups) != 0)
      return "setgroups";
    if (::syscall(SYS_setresgid, c.gid, c.gid, c.gid) != 0)
      return "setresgid";
  }
  if (c.set_uid && ::syscall(SYS_setresuid, c.uid, c.uid, c.uid) != 0)
    return "setresuid";
  if (c.set_groups || c.set_uid) {
    // A credential change clears the parent-death signal.
    if (raw_prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
      return "prctl(PR_SET_PDEATHSIG)";
    if (::getppid() != parent) {
      errno = ESRCH;
      return "the guard process died";
    }
  }
  if (c.no_new_privs && raw_prctl(PR_SET_NO_NEW_PRIVS, 1) != 0)
    return "prctl(PR_SET_NO_NEW_PRIVS)";
  if (c.filter != nullptr &&
      raw_prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, reinterpret_cast<unsigned long>(c.filter)) != 0)
    return "prctl(PR_SET_SECCOMP)";
  return nullptr;
}

} // namespace pyvisor::process
