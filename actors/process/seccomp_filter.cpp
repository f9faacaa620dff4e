#include "process/seccomp_filter.hpp"

#include <cerrno>
#include <cstring>
#include <seccomp.h>
#include <sys/mman.h>
#include <unistd.h>

#include "pyvisor/isolation.hpp"

namespace pyvisor::process {

namespace {

struct ctx_guard {
  scmp_filter_ctx ctx;
  ~ctx_guard() {
    if (ctx != nullptr)
      seccomp_release(ctx);
  }
};

struct fd_guard {
  int fd;
  ~fd_guard() {
    if (fd >= 0)
      ::close(fd);
  }
};

/// Resolves the names; `defaults`: unknown names are skipped instead of refused.
expected<std::vector<int>> resolve(const std::vector<std::string>& names, bool defaults) {
  std::vector<int> nrs;
  for (const auto& n : names) {
    int nr = seccomp_syscall_resolve_name(n.c_str());
    if (nr == __NR_SCMP_ERROR) {
      if (defaults)
        continue;
      return make_error(errc::config_error,
                        "sandbox.deny: unknown system call '" + n + "' on this architecture");
    }
    nrs.push_back(nr);
  }
  return nrs;
}

bool write_all(int fd, const void* data, std::size_t size) {
  auto* p = static_cast<const char*>(data);
  while (size > 0) {
    auto n = ::write(fd, p, size);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return false;
    p += n;
    size -= static_cast<std::size_t>(n);
  }
  return true;
}

} // namespace

expected<void> check_syscall_names(const std::vector<std::string>& deny) {
  auto r = resolve(deny, false);
  if (!r)
    return r.error();
  return {};
}

expected<seccomp_program> compile_seccomp(const std::vector<std::string>& deny) {
  bool defaults = deny.empty();
  auto nrs = resolve(defaults ? default_seccomp_deny() : deny, defaults);
  if (!nrs)
    return std::move(nrs).error();
  auto fail = [](const char* what, int rc) {
    return make_error(errc::spawn_failed,
                      std::string{"seccomp: "} + what + ": " + std::strerror(rc < 0 ? -rc : rc));
  };
  ctx_guard g{seccomp_init(SCMP_ACT_ALLOW)};
  if (g.ctx == nullptr)
    return make_error(errc::spawn_failed, "seccomp: seccomp_init failed");
  // A binary tree of syscall numbers instead of a linear list: every syscall Python makes (the
  // allowed ones) is checked in ~log2(rules) comparisons, not one per denied syscall.
  (void)seccomp_attr_set(g.ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
  for (int nr : *nrs)
    if (int rc = seccomp_rule_add(g.ctx, SCMP_ACT_ERRNO(EPERM), nr, 0); rc != 0)
      return fail("seccomp_rule_add", rc);
  // Exported through a memfd (libseccomp 2.5 has no in-memory export), then read back.
  fd_guard mem{::memfd_create("pyvisor-seccomp", MFD_CLOEXEC)};
  if (mem.fd < 0)
    return fail("memfd_create", errno);
  if (int rc = seccomp_export_bpf(g.ctx, mem.fd); rc != 0)
    return fail("seccomp_export_bpf", rc);
  off_t size = ::lseek(mem.fd, 0, SEEK_END);
  if (size <= 0 || size % static_cast<off_t>(sizeof(sock_filter)) != 0)
    return make_error(errc::spawn_failed, "seccomp: the exported program is malformed");
  seccomp_program p;
  p.code.resize(static_cast<std::size_t>(size) / sizeof(sock_filter));
  if (::pread(mem.fd, p.code.data(), static_cast<std::size_t>(size), 0) != size)
    return fail("reading the exported program", errno != 0 ? errno : EIO);
  return p;
}

int seccomp_memfd(const seccomp_program& p) {
  int fd = ::memfd_create("pyvisor-seccomp", MFD_CLOEXEC);
  if (fd < 0)
    return -1;
  if (!write_all(fd, p.code.data(), p.code.size() * sizeof(sock_filter)) ||
      ::lseek(fd, 0, SEEK_SET) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

} // namespace pyvisor::process
