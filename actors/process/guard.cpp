#include "process/guard.hpp"
#include "process/raw_prctl.hpp"

#include <cerrno>
#include <cstdint>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

// Whether the guard keeps its copy of the host's memory: under a sanitizer whose runtime keeps
// its state (shadow memory, allocator metadata) in large anonymous mappings and intercepts the
// guard's memset and memcpy, dropping them would pull that state from under it.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PYVISOR_GUARD_KEEPS_HOST_MEMORY 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define PYVISOR_GUARD_KEEPS_HOST_MEMORY 1
#endif
#endif
#ifndef PYVISOR_GUARD_KEEPS_HOST_MEMORY
#define PYVISOR_GUARD_KEEPS_HOST_MEMORY 0
#endif

namespace pyvisor::process {

void guard_signals(sigset_t* set) {
  sigemptyset(set);
  sigaddset(set, SIGCHLD);
  sigaddset(set, guard_death_signal);
  sigaddset(set, SIGTERM);  // forwarded to P's group
  sigaddset(set, SIGINT);   // forwarded to P's group
  sigaddset(set, SIGQUIT);  // forwarded to P's group
}

namespace {

// ---- The guard -------------------------------------------------------------------------------
//
// The process Boost.Process forks does not exec: it becomes the guard G, a child subreaper that
// forks the real Python child P and stays behind. Every orphan of P's descendants (setsid'd,
// double-forked daemons) is reparented to G; when P exits, or when the host dies (G's
// PR_SET_PDEATHSIG), G kills P's process group and then everything still in its subtree, reaps
// P last and exits with P's status. The host reaps G (spawned_process::pid) and signals P
// (spawned_process::python_pid).
//
// All of it runs in a fork of a multi-threaded host: raw syscalls only (no allocation, no
// stdio, no locks), fixed stack buffers, hand-written number formatting and parsing. A libc
// wrapper is fine only where no sanitizer interceptor of it takes a lock: prctl goes through
// syscall(2) (raw_prctl.hpp); tests/integration/descendants_test.cpp's churn test holds such a
// lock from other threads while interpreters start.

/// Signals G waits for (blocked in G, so sigtimedwait collects them).
// (declared in guard.hpp)  // G's PR_SET_PDEATHSIG: the host died


char* put_str(char* p, const char* s) {
  while (*s != '\0')
    *p++ = *s++;
  return p;
}

char* put_uint(char* p, unsigned long v) {
  char tmp[24];
  int n = 0;
  do {
    tmp[n++] = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0)
    *p++ = tmp[--n];
  return p;
}

struct pid_list {
  pid_t* v;
  int n;
  int cap;
  void add(long pid) {
    if (pid > 0 && n < cap)
      v[n++] = static_cast<pid_t>(pid);
  }
};

/// Calls `f(c)` for every byte of the file at `path` (raw reads into a stack buffer);
/// false when it cannot be opened.
template <class F>
bool for_each_byte(const char* path, F&& f) {
  int fd = ::open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  char buf[1024];
  for (;;) {
    auto r = ::read(fd, buf, sizeof buf);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      break;
    for (long i = 0; i < r; ++i)
      f(buf[i]);
  }
  ::close(fd);
  return true;
}

/// Appends the pids listed in `path` (decimal, space separated: a /proc children file).
void read_pids(const char* path, pid_list& out) {
  long cur = -1;
  for_each_byte(path, [&](char c) {
    if (c >= '0' && c <= '9') {
      cur = (cur < 0 ? 0 : cur) * 10 + (c - '0');
    } else if (cur >= 0) {
      out.add(cur);
      cur = -1;
    }
  });
  if (cur >= 0)
    out.add(cur);
}

/// Appends the children of every thread of `pid` (/proc/PID/task/TID/children; a child belongs
/// to the thread that forked it).
void children_of(pid_t pid, pid_list& out) {
  char dir[48];
  char* d = put_str(dir, "/proc/");
  d = put_uint(d, static_cast<unsigned long>(pid));
  d = put_str(d, "/task");
  *d = '\0';
  int dfd = ::open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0)
    return;
  alignas(8) char buf[2048];
  for (;;) {
    long n = ::syscall(SYS_getdents64, dfd, buf, sizeof buf);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      break;
    for (long off = 0; off < n;) {
      auto* e = reinterpret_cast<struct dirent64*>(buf + off);
      off += e->d_reclen;
      unsigned long tid = 0;
      bool numeric = e->d_name[0] != '\0';
      for (const char* c = e->d_name; *c != '\0' && numeric; ++c) {
        if (*c < '0' || *c > '9')
          numeric = false;
        else
          tid = tid * 10 + static_cast<unsigned long>(*c - '0');
      }
      if (!numeric)
        continue;
      char path[96];
      char* p = put_str(path, dir);
      p = put_str(p, "/");
      p = put_uint(p, tid);
      p = put_str(p, "/children");
      *p = '\0';
      read_pids(path, out);
    }
  }
  ::close(dfd);
}

/// SIGKILLs every process in the guard's subtree except `python`, top down (each process is
/// killed before its children are listed, so it can no longer fork or reap), reaps the direct
/// children, and repeats until the guard has no child left but `python` (the orphans of killed
/// processes come back to the guard, the subreaper). Children it may not kill (EPERM) are left.
void kill_subtree(pid_t self, pid_t python) {
  pid_t buf[1024];
  for (int round = 0; round < 10000; ++round) {
    pid_list l{buf, 0, 1024};
    children_of(self, l);
    int direct = 0;
    for (int i = 0; i < l.n; ++i)
      if (l.v[i] != python)
        l.v[direct++] = l.v[i];
    l.n = direct;
    if (direct == 0)
      return;
    int killed_direct = 0;
    for (int i = 0; i < l.n; ++i) {
      bool killed = ::kill(l.v[i], SIGKILL) == 0;
      if (i < direct) {
        if (killed)
          ++killed_direct;
        else
          l.v[i] = -l.v[i];  // not ours to kill (or already gone): do not wait for it
      }
      if (killed)
        children_of(l.v[i], l);
    }
    for (int i = 0; i < direct; ++i)
      if (l.v[i] > 0)
        while (::waitpid(l.v[i], nullptr, 0) < 0 && errno == EINTR) {
        }
    if (killed_direct == 0)
      return;
  }
}

/// Reaps the orphans that ended; returns whether `python` has exited (it is left a zombie, so
/// its pid, also its process group id, cannot be reused while the guard cleans up).
bool python_exited(pid_t python) {
  for (;;) {
    siginfo_t si;
    std::memset(&si, 0, sizeof si);
    if (::waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT) != 0)
      return errno != EINTR;  // ECHILD: cannot happen while python is unreaped
    if (si.si_pid == 0)
      return false;
    if (si.si_pid == python)
      return true;
    ::waitpid(si.si_pid, nullptr, WNOHANG);  // a reparented orphan ended
  }
}

/// Closes every fd but `keep`.
void close_all_but(int keep) {
  bool ok = (keep <= 0 || ::syscall(SYS_close_range, 0U, static_cast<unsigned>(keep - 1), 0U) == 0) &&
            ::syscall(SYS_close_range, static_cast<unsigned>(keep + 1), ~0U, 0U) == 0;
  if (!ok) {
    for (int fd = 0; fd < 65536; ++fd)
      if (fd != keep)
        ::close(fd);
  }
}

#if !PYVISOR_GUARD_KEEPS_HOST_MEMORY
std::uintptr_t parse_hex(const char*& p) {
  std::uintptr_t v = 0;
  for (;; ++p) {
    char c = *p;
    if (c >= '0' && c <= '9')
      v = v * 16 + static_cast<std::uintptr_t>(c - '0');
    else if (c >= 'a' && c <= 'f')
      v = v * 16 + static_cast<std::uintptr_t>(c - 'a' + 10);
    else
      return v;
  }
}

/// Acts on one line of /proc/self/maps (see release_host_memory).
void release_mapping(const char* line, std::uintptr_t sp) {
  constexpr std::uintptr_t min_size = std::uintptr_t{1} << 20;
  const char* p = line;
  auto start = parse_hex(p);
  if (*p++ != '-')
    return;
  auto end = parse_hex(p);
  if (*p++ != ' ' || std::strncmp(p, "rw-p ", 5) != 0)
    return;
  p += 5;
  // offset, device, inode
  for (int field = 0; field < 2; ++field) {
    while (*p != ' ' && *p != '\0')
      ++p;
    while (*p == ' ')
      ++p;
  }
  if (p[0] != '0' || (p[1] != ' ' && p[1] != '\0'))
    return;  // a file mapping (its inode is not 0)
  ++p;
  while (*p == ' ')
    ++p;
  bool anonymous = *p == '\0' || std::strncmp(p, "[heap]", 6) == 0;
  if (!anonymous || end - start < min_size || (sp >= start && sp < end))
    return;
  ::madvise(reinterpret_cast<void*>(start), end - start, MADV_DONTNEED);
}

#endif

/// The guard is a copy of the host that never execs: every page the host writes later would
/// stay behind in it (copy-on-write), up to the host's whole heap per interpreter. It needs
/// none of them, so it drops its copies of the large anonymous mappings (heap, malloc arenas,
/// other threads' stacks, big buffers; never the stack it runs on, never a file mapping, and
/// nothing under 1 MiB such as libc's own data). Not under ASan, TSan or MSan
/// (PYVISOR_GUARD_KEEPS_HOST_MEMORY).
void release_host_memory() {
#if PYVISOR_GUARD_KEEPS_HOST_MEMORY
  return;
#else
  char marker = 0;
  auto sp = reinterpret_cast<std::uintptr_t>(&marker);
  char line[512];
  std::size_t len = 0;
  bool overlong = false;
  for_each_byte("/proc/self/maps", [&](char c) {
    if (c != '\n') {
      if (len + 1 < sizeof line)
        line[len++] = c;
      else
        overlong = true;  // a long path: its mapping has a name, so it is not anonymous
      return;
    }
    line[len] = '\0';
    if (!overlong)
      release_mapping(line, sp);
    len = 0;
    overlong = false;
  });
#endif
}


} // namespace

/// The guard's life after the fork; never returns into Boost or host code.
[[noreturn]] void guard_main(pid_t python, int pid_w, pid_t host) {
  // Ignore SIGPIPE: the host may be gone when the pid is written.
  struct sigaction ign;
  std::memset(&ign, 0, sizeof ign);
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ign, nullptr);
  // No fd of the host (pipes, Boost's exec-error pipe): the host must see EOF when P dies, and
  // Boost's exec-error report must come from P alone.
  close_all_but(pid_w);
  const char* p = reinterpret_cast<const char*>(&python);
  std::size_t left = sizeof python;
  while (left > 0) {
    auto w = ::write(pid_w, p, left);
    if (w < 0 && errno == EINTR)
      continue;
    if (w <= 0)
      break;
    p += w;
    left -= static_cast<std::size_t>(w);
  }
  ::close(pid_w);
  release_host_memory();  // after the pid: the host waits for it
  // In ps/top, instead of the host's name. Not libc's prctl: ASan's interceptor of
  // PR_SET_NAME renames its record of the thread under its thread-registry lock, which another
  // host thread may have held at the fork (the guard then waited on it forever, Python's exit
  // unreaped and the host's stop() with it).
  raw_prctl(PR_SET_NAME, reinterpret_cast<unsigned long>("pyvisor-guard"));
  if (::chdir("/") != 0) {
    // harmless: only keeps the host's cwd referenced
  }
  struct rlimit no_core = {0, 0};
  ::setrlimit(RLIMIT_CORE, &no_core);  // G mirrors P's signal death: never dump the host image
  ::setpgid(0, 0);  // out of the host's group: terminal and group signals to the host miss G

  sigset_t wait_set;
  guard_signals(&wait_set);
  while (!python_exited(python)) {
    siginfo_t si;
    long sig = ::syscall(SYS_rt_sigtimedwait, &wait_set, &si, nullptr, _NSIG / 8);
    if (sig < 0)
      continue;
    // The host died (PR_SET_PDEATHSIG: sent by the kernel on behalf of the exiting host thread,
    // so si_pid is the host). The same signal from anyone else (`pkill -HUP -f "pyvisor serve"`
    // meant to reload the daemon also matches the guards, which show its command line) is
    // ignored: it must not take the worker down.
    if (sig == guard_death_signal && (si.si_pid == host || si.si_pid == 0 || ::getppid() != host))
      break;
    if (sig == SIGTERM || sig == SIGINT || sig == SIGQUIT)
      ::kill(-python, static_cast<int>(sig));
  }
  // P's group, and P itself (it may have left its group); P is not reaped yet, so neither pid
  // can have been reused.
  ::kill(-python, SIGKILL);
  ::kill(python, SIGKILL);
  siginfo_t st;
  std::memset(&st, 0, sizeof st);
  while (::waitid(P_PID, static_cast<id_t>(python), &st, WEXITED | WNOWAIT) != 0 && errno == EINTR) {
  }
  kill_subtree(::getpid(), python);
  std::memset(&st, 0, sizeof st);
  while (::waitid(P_PID, static_cast<id_t>(python), &st, WEXITED) != 0 && errno == EINTR) {
  }
  // Exit as P did, so the host's waitpid(G) reads P's status.
  if (st.si_code == CLD_EXITED)
    ::_exit(st.si_status);
  int sig = st.si_status;
  struct sigaction dfl;
  std::memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  ::sigaction(sig, &dfl, nullptr);
  sigset_t one;
  sigemptyset(&one);
  sigaddset(&one, sig);
  ::sigprocmask(SIG_UNBLOCK, &one, nullptr);
  ::kill(::getpid(), sig);
  ::_exit(128 + sig);
}

} // namespace pyvisor::process
