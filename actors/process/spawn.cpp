#include "process/spawn.hpp"

#include "process/guard.hpp"
#include "process/isolation.hpp"
#include "process/raw_prctl.hpp"
#include "process/sandbox.hpp"

#include <cerrno>
#include <cstdint>
#include <csignal>
#include <cstring>
#include <dirent.h>
#include <fcntl.h>
#include <linux/close_range.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/exe.hpp>
#include <boost/process/extend.hpp>
#include <boost/process/start_dir.hpp>

namespace bp = boost::process;

namespace pyvisor::process {

namespace {

/// Runs in the child between fork and exec: async-signal-safe calls only, no allocation.
/// On failure it reports through Boost's exec-error pipe (set_error) and exits 127. The
/// process Boost forked becomes the guard; its child P continues into Boost's exec.
struct child_setup : bp::extend::handler {
  // Sources (host fds, all O_CLOEXEC) and where they go in the child.
  int to_child_src = -1;    // -> 3 (or 0)
  int from_child_src = -1;  // -> 4 (or 1)
  int out_src = -1;         // -> 1 (fds transport only)
  int err_src = -1;         // -> 2
  int intr_src = -1;        // -> 5 (fds transport only)
  int dump_src = -1;        // -> 6 (fds transport only)
  int pid_w = -1;           // the guard writes P's pid here (not passed to P)
  int control_src = -1;     // -> 7 (a fork-server template's control socket)
  int shm_src = -1;         // -> 8 (shared memory for large bytes)
  bool stdio = false;
  pid_t parent = 0;
  char** envp = nullptr;
  pid_t* forked = nullptr;  // host side: the pid Boost forked (the guard), also on failure
  const child_isolation* iso = nullptr;  // limits, identity, seccomp (prepared by the host)

  template <class Executor>
  void on_setup(Executor& e) const {
    e.env = envp;  // our environment array instead of the host's
  }

  template <class Executor>
  void on_success(Executor& e) const {
    *forked = e.pid;
  }

  template <class Executor>
  void on_error(Executor& e, const std::error_code&) const {
    *forked = e.pid;  // -1 unless the fork happened (then the guard must be reaped)
  }

  template <class Executor>
  [[noreturn]] void fail(Executor& e, const char* what) const {
    e.set_error(std::error_code(errno, std::system_category()), what);
    ::_exit(127);
  }

  template <class Executor>
  void on_exec_setup(Executor& e) const {
    // 1. Default dispositions: handlers and ignored signals of the host (CAF, libuv, an
    //    ignored SIGPIPE) must reach neither the guard nor Python. Every signal is blocked
    //    until here (spawn blocks them across the fork); the guard's stay blocked from here
    //    on, so none is lost before it waits for them.
    struct sigaction sa;
    std::memset(&sa, 0, sizeof sa);
    sa.sa_handler = SIG_DFL;
    for (int sig = 1; sig < NSIG; ++sig)
      if (sig != SIGKILL && sig != SIGSTOP)
        ::sigaction(sig, &sa, nullptr);  // fails harmlessly for the reserved RT signals
    sigset_t guard_set;
    guard_signals(&guard_set);
    ::sigprocmask(SIG_SETMASK, &guard_set, nullptr);
    // 2. The guard: subreaper (orphans of every descendant come to it), told when the host
    //    dies (the forking host thread: the I/O loop thread), race with that death closed.
    if (raw_prctl(PR_SET_CHILD_SUBREAPER, 1) != 0)
      fail(e, "prctl(PR_SET_CHILD_SUBREAPER)");
    if (raw_prctl(PR_SET_PDEATHSIG, guard_death_signal) != 0)
      fail(e, "prctl(PR_SET_PDEATHSIG)");
    if (::getppid() != parent)
      ::_exit(127);
    pid_t guard = ::getpid();
    pid_t python = ::_Fork();  // no atfork handlers: safe in a fork of a threaded process
    if (python < 0)
      fail(e, "fork (guard)");
    if (python > 0)
      guard_main(python, pid_w, parent);
    // 3. P, the Python process: an empty signal mask; its own process group (stop sequences
    //    signal the whole group); dies with the guard (race with its death closed).
    ::close(pid_w);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    if (::setpgid(0, 0) != 0)
      fail(e, "setpgid");
    if (raw_prctl(PR_SET_PDEATHSIG, SIGKILL) != 0)
      fail(e, "prctl(PR_SET_PDEATHSIG)");
    if (::getppid() != guard)
      ::_exit(127);
    // 4. fds: move the sources above 10 first (a source already numbered like a target would
    //    otherwise be clobbered, or keep its CLOEXEC after dup2(fd, fd)), then dup2 into place
    //    (dup2 clears CLOEXEC on the target), then mark everything above them CLOEXEC.
    int in = ::fcntl(to_child_src, F_DUPFD_CLOEXEC, 10);
    int out_proto = ::fcntl(from_child_src, F_DUPFD_CLOEXEC, 10);
    int err = ::fcntl(err_src, F_DUPFD_CLOEXEC, 10);
    int out = stdio ? -1 : ::fcntl(out_src, F_DUPFD_CLOEXEC, 10);
    int intr = stdio ? -1 : ::fcntl(intr_src, F_DUPFD_CLOEXEC, 10);
    int dump = stdio ? -1 : ::fcntl(dump_src, F_DUPFD_CLOEXEC, 10);
    int filter_src = iso != nullptr ? iso->seccomp_fd_src : -1;
    int filter = filter_src >= 0 ? ::fcntl(filter_src, F_DUPFD_CLOEXEC, 10) : -1;
    int control = control_src >= 0 ? ::fcntl(control_src, F_DUPFD_CLOEXEC, 10) : -1;
    int shm = shm_src >= 0 && !stdio ? ::fcntl(shm_src, F_DUPFD_CLOEXEC, 10) : -1;
    if (in < 0 || out_proto < 0 || err < 0 || (!stdio && (out < 0 || intr < 0 || dump < 0)) ||
        (filter_src >= 0 && filter < 0) || (control_src >= 0 && control < 0) ||
        (shm_src >= 0 && !stdio && shm < 0))
      fail(e, "fcntl(F_DUPFD_CLOEXEC)");
    if (stdio) {
      if (::dup2(in, 0) < 0 || ::dup2(out_proto, 1) < 0 || ::dup2(err, 2) < 0)
        fail(e, "dup2");
      // fds 3/4 are not part of the stdio contract: whatever the host had there (reserved
      // /dev/null fds, Boost's error pipe) is CLOEXEC and goes away at exec.
    } else {
      int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (devnull < 0)
        fail(e, "open(/dev/null)");
      if (::dup2(devnull, 0) < 0 || ::dup2(out, 1) < 0 || ::dup2(err, 2) < 0 ||
          ::dup2(in, 3) < 0 || ::dup2(out_proto, 4) < 0 || ::dup2(intr, 5) < 0 ||
          ::dup2(dump, 6) < 0)
        fail(e, "dup2");
    }
    int first_other = stdio ? 3 : 7;
    if (filter >= 0) {
      // The seccomp program for `bwrap --seccomp 7`, inherited (dup2 clears CLOEXEC).
      if (::dup2(filter, sandbox_seccomp_fd) < 0)
        fail(e, "dup2");
      mark_cloexec(first_other, sandbox_seccomp_fd - 1);
      first_other = sandbox_seccomp_fd + 1;
    } else if (control >= 0) {
      // A fork-server template's control socket (the same number: bwrap is excluded).
      if (::dup2(control, 7) < 0)
        fail(e, "dup2");
      mark_cloexec(first_other, 6);
      first_other = 8;
    }
    if (shm >= 0) {
      mark_cloexec(first_other, 7);
      if (::dup2(shm, 8) < 0)
        fail(e, "dup2");
      first_other = 9;
    }
    mark_cloexec(first_other, ~0U);
    // 5. Isolation: rlimits (NOFILE now that the fds are in place), identity, no_new_privs,
    //    seccomp. After a uid change P's PDEATHSIG is set again (the kernel cleared it).
    if (iso != nullptr)
      if (const char* what = apply_isolation(*iso, guard))
        fail(e, what);
  }

  static void mark_cloexec(unsigned first, unsigned last) {
    if (first > last)
      return;
    if (::syscall(SYS_close_range, first, last, CLOSE_RANGE_CLOEXEC) != 0) {
      // Kernels before 5.11: mark a bounded range by hand.
      long max = ::sysconf(_SC_OPEN_MAX);
      if (max < 0 || max > 65536)
        max = 65536;
      for (long fd = first; fd < max && fd <= static_cast<long>(last); ++fd)
        ::fcntl(static_cast<int>(fd), F_SETFD, FD_CLOEXEC);
    }
  }
};

error spawn_error(const std::string& what, int err) {
  return make_error(errc::spawn_failed, what + ": " + std::strerror(err));
}

} // namespace

void reserve_low_fds() {
  for (int fd = 0; fd <= 8; ++fd) {
    if (::fcntl(fd, F_GETFD) == -1 && errno == EBADF) {
      // open() returns the lowest free fd, which is `fd` since all below are open.
      int got = ::open("/dev/null", O_RDWR | O_CLOEXEC);
      if (got >= 0 && got != fd)
        ::close(got);
    }
  }
}

void close_fd(int& fd) {
  if (fd >= 0) {
    ::close(fd);
    fd = -1;
  }
}

void set_nonblocking(const spawned_process& p) {
  for (int fd : {p.to_child, p.from_child, p.out, p.err, p.interrupt, p.dump,
                 p.status_pipe ? p.pidfd : -1}) {
    int fl = fd >= 0 ? ::fcntl(fd, F_GETFL) : -1;
    if (fl >= 0)
      ::fcntl(fd, F_SETFL, fl | O_NONBLOCK);
  }
}

exit_context exit_context_of(const spawn_request& req) {
  exit_context c;
  c.memory = req.isolation.limits.memory;
  c.cpu_seconds = req.isolation.limits.cpu_seconds;
  c.file_size = req.isolation.limits.file_size;
  c.sandboxed = req.isolation.sandbox.kind == sandbox_kind::bwrap;
  return c;
}

int make_shared_memory(std::size_t bytes) {
  int fd = ::memfd_create("pyvisor-shm", MFD_CLOEXEC | MFD_ALLOW_SEALING);
  if (fd < 0)
    return -1;
  // Sealed at its size: a process that truncated it would make the host's next access to the
  // mappings a SIGBUS (found by a review: `os.ftruncate` on the runner's dup of the fd).
  if (::ftruncate(fd, static_cast<off_t>(2 * bytes)) != 0 ||
      ::fcntl(fd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL) != 0) {
    int e = errno;
    ::close(fd);
    errno = e;
    return -1;
  }
  return fd;
}

void close_fds(spawned_process& p) {
  close_fd(p.shm);
  close_fd(p.interrupt);
  close_fd(p.dump);
  close_fd(p.pidfd);
  close_fd(p.to_child);
  close_fd(p.from_child);
  close_fd(p.out);
  close_fd(p.err);
}

namespace {

/// Reads the 4-byte pid the guard writes (bounded: it writes it right after its fork, before
/// Python even execs). -1 on EOF (the guard died first), error or timeout.
pid_t read_python_pid(int fd, int timeout_ms) {
  pid_t pid = -1;
  auto* p = reinterpret_cast<char*>(&pid);
  std::size_t got = 0;
  while (got < sizeof pid) {
    pollfd pfd{fd, POLLIN, 0};
    int r = ::poll(&pfd, 1, timeout_ms);
    if (r < 0 && errno == EINTR)
      continue;
    if (r <= 0)
      return -1;
    auto n = ::read(fd, p + got, sizeof pid - got);
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return -1;
    got += static_cast<std::size_t>(n);
  }
  return pid;
}

void kill_and_reap(pid_t pid) {
  ::kill(pid, SIGKILL);  // the guard; Python follows it (PR_SET_PDEATHSIG)
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
}

} // namespace

expected<spawned_process> spawn(const spawn_request& req) {
  if (req.argv.empty() || req.argv[0].empty() || req.argv[0][0] != '/')
    return make_error(errc::spawn_failed, "executable must be an absolute path");
  if (::access(req.argv[0].c_str(), X_OK) != 0)
    return spawn_error("cannot execute '" + req.argv[0] + "'", errno);
  if (!req.cwd.empty()) {
    struct stat st;
    if (::stat(req.cwd.c_str(), &st) != 0)
      return spawn_error("working directory '" + req.cwd + "'", errno);
    if (!S_ISDIR(st.st_mode))
      return spawn_error("working directory '" + req.cwd + "'", ENOTDIR);
  }

  int in[2] = {-1, -1}, out_proto[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1},
      intr[2] = {-1, -1}, dump[2] = {-1, -1}, pid_pipe[2] = {-1, -1};
  int shm = -1;
  auto cleanup = [&] {
    for (int* p : {in, out_proto, out, err, intr, dump, pid_pipe}) {
      close_fd(p[0]);
      close_fd(p[1]);
    }
    close_fd(shm);
  };
  // All O_CLOEXEC (threads spawn concurrently); the child setup moves its sources above 10
  // before mapping them, and the guard closes everything but pid_pipe[1].
  if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out_proto, O_CLOEXEC) != 0 ||
      ::pipe2(err, O_CLOEXEC) != 0 || ::pipe2(pid_pipe, O_CLOEXEC) != 0 ||
      (!req.stdio_transport && (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(intr, O_CLOEXEC) != 0 ||
                                ::pipe2(dump, O_CLOEXEC) != 0))) {
    int e = errno;
    cleanup();
    return spawn_error("pipe2", e);
  }

  // Without it the runner runs without shared memory (its `ready` says so).
  if (req.shm_bytes > 0 && !req.stdio_transport)
    shm = make_shared_memory(req.shm_bytes);

  // Everything the child applies is prepared here (it may not allocate): limits, identity,
  // seccomp program, work dir.
  auto plan = prepare_isolation(req.isolation);
  if (!plan) {
    cleanup();
    return std::move(plan).error();
  }
  bool sandboxed = req.isolation.sandbox.kind == sandbox_kind::bwrap;

  std::vector<char*> envp;
  envp.reserve(req.env.size() + 1);
  for (const auto& s : req.env)
    envp.push_back(const_cast<char*>(s.c_str()));
  envp.push_back(nullptr);

  pid_t forked = -1;
  child_setup setup;
  setup.to_child_src = in[0];
  setup.from_child_src = out_proto[1];
  setup.out_src = out[1];
  setup.err_src = err[1];
  setup.intr_src = intr[0];
  setup.dump_src = dump[1];
  setup.pid_w = pid_pipe[1];
  setup.control_src = sandboxed ? -1 : req.control_fd;
  setup.shm_src = shm;
  setup.stdio = req.stdio_transport;
  setup.parent = ::getpid();
  setup.envp = envp.data();
  setup.forked = &forked;
  setup.iso = &(*plan)->child;

  std::vector<std::string> args(req.argv.begin() + 1, req.argv.end());
  std::error_code ec;
  pid_t pid = -1;
  {
    // Every signal stays blocked in this thread across the fork: until on_exec_setup resets
    // the dispositions, the child would run the host's handlers (a Ctrl-C in that window ran
    // the CLI's handler in both, and it took the one Ctrl-C for a second one). The child starts
    // with them blocked and sets its own mask; this thread's is restored once Boost returns.
    struct signals_blocked {
      sigset_t old;
      signals_blocked() {
        sigset_t all;
        sigfillset(&all);
        ::pthread_sigmask(SIG_BLOCK, &all, &old);
      }
      ~signals_blocked() { ::pthread_sigmask(SIG_SETMASK, &old, nullptr); }
      signals_blocked(const signals_blocked&) = delete;
      signals_blocked& operator=(const signals_blocked&) = delete;
    } blocked;
    // Returns once Python exec'd (Boost's exec-error pipe saw EOF: Python's copy closed at
    // exec, the guard closed its own) or with the error Python reported.
    bp::child c = req.cwd.empty()
                    ? bp::child(bp::exe = req.argv[0], bp::args = args, setup, ec)
                    : bp::child(bp::exe = req.argv[0], bp::args = args,
                                bp::start_dir = req.cwd, setup, ec);
    if (!ec && c.valid()) {
      pid = c.id();
      c.detach();  // we reap it ourselves; ~child() would SIGKILL an attached child
    }
  }
  // The child's ends, closed in the host right away (else EOF never comes).
  close_fd(in[0]);
  close_fd(out_proto[1]);
  close_fd(out[1]);
  close_fd(err[1]);
  close_fd(intr[0]);
  close_fd(dump[1]);
  close_fd(pid_pipe[1]);
  if (ec || pid <= 0) {
    // A guard that was forked (Python's exec or setup failed) ends once Python did: reap it.
    if (forked > 0)
      kill_and_reap(forked);
    cleanup();
    std::string as = (*plan)->ident.describe.empty() ? "" : " (as " + (*plan)->ident.describe + ")";
    return make_error(errc::spawn_failed, "cannot start '" + req.argv[0] + "'" + as + ": " +
                                            (ec ? ec.message() : "unknown"));
  }
  pid_t python = read_python_pid(pid_pipe[0], 10000);
  close_fd(pid_pipe[0]);
  if (python <= 0) {
    kill_and_reap(pid);
    cleanup();
    return make_error(errc::spawn_failed,
                      "cannot start '" + req.argv[0] + "': the guard process did not report");
  }

  if (sandboxed) {
    // P is bwrap; Python is its init's child, in a process group of its own.
    pid_t inner = find_sandboxed_python(python, 10000);
    if (inner == -2) {
      kill_and_reap(pid);
      cleanup();
      return make_error(errc::spawn_failed,
                        "cannot start '" + req.argv[0] + "': the sandbox did not start Python "
                        "within 10 s");
    }
    if (inner > 0)
      python = inner;  // else bwrap failed: its exit (and stderr) reports why
  }

  spawned_process p;
  p.pid = pid;
  p.context = exit_context_of(req);
  p.python_pid = python;
  p.to_child = in[1];
  p.from_child = out_proto[0];
  p.out = out[0];
  p.err = err[0];
  p.interrupt = intr[1];
  p.dump = dump[0];
  p.shm = shm;
  p.shm_bytes = shm >= 0 ? req.shm_bytes : 0;
  p.pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (p.pidfd < 0) {
    int e = errno;
    kill_and_reap(pid);
    close_fds(p);
    return spawn_error("pidfd_open (Linux >= 5.3 required)", e);
  }
  set_nonblocking(p);
  return p;
}

} // namespace pyvisor::process
