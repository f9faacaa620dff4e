#include "process/fork_server.hpp"

#include <algorithm>
#include <array>
#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

namespace pyvisor::process {

namespace {

constexpr std::size_t tail_limit = 4096;
constexpr int fds_per_worker = 7;  // + 1 with shared memory (the worker's fd 8)
/// The first reply may wait for the template's start and preload imports.
constexpr int first_reply_ms = 120000;
constexpr int reply_ms = 10000;
/// The template's limit on one request (python/pyvisor/_fork_server.py, _MAX_REQUEST); a
/// SOCK_SEQPACKET message must also fit the socket's send buffer (~208 KiB by default).
constexpr std::size_t max_request = 64 * 1024;

bool readable(int fd, int timeout_ms) {
  pollfd p{fd, POLLIN, 0};
  int r;
  while ((r = ::poll(&p, 1, timeout_ms)) < 0 && errno == EINTR) {
  }
  return r > 0;
}

error failed(const std::string& what) {
  return make_error(errc::spawn_failed, "fork server: " + what);
}

/// Appends what `fd` holds now to `got` (non-blocking).
void read_available(std::string& got, int fd) {
  if (fd < 0)
    return;
  char buf[4096];
  for (;;) {
    auto n = ::read(fd, buf, sizeof buf);
    if (n <= 0)
      break;
    got.append(buf, static_cast<std::size_t>(n));
  }
}

} // namespace

fork_server::fork_server(spawn_request tmpl, line_fn on_line)
    : tmpl_(std::move(tmpl)), on_line_(std::move(on_line)) {
  thread_ = std::thread([this] { run(); });
}

fork_server::~fork_server() {
  shutdown();
}

void fork_server::shutdown() {
  {
    std::lock_guard<std::mutex> g{mu_};
    stopping_ = true;
  }
  cv_.notify_all();
  std::lock_guard<std::mutex> g{join_mu_};
  if (thread_.joinable())
    thread_.join();
}

void fork_server::spawn(std::vector<std::string> runner_args, exit_context context,
                        std::size_t shm_bytes,
                        done_fn done) {
  {
    std::lock_guard<std::mutex> g{mu_};
    if (!stopping_) {
      jobs_.push_back(job{std::move(runner_args), context, shm_bytes, std::move(done)});
      cv_.notify_all();
      return;
    }
  }
  done(make_error(errc::shutting_down, "fork server: stopping"));
}

void fork_server::run() {
  for (;;) {
    job j;
    {
      std::unique_lock<std::mutex> g{mu_};
      cv_.wait(g, [this] { return stopping_ || !jobs_.empty(); });
      if (jobs_.empty())
        break;  // stopping, nothing left
      j = std::move(jobs_.front());
      jobs_.pop_front();
    }
    if (j.done)
      j.done(fork_one(j));
  }
  stop_template(true);
}

bool fork_server::template_alive() const {
  // The template never writes unasked: a readable socket is its EOF.
  return proc_.pid > 0 && !readable(proc_.pidfd, 0) && !readable(sock_, 0);
}

void fork_server::read_output() {
  std::string got;
  read_available(got, proc_.err);
  read_available(got, proc_.out);
  if (got.empty())
    return;
  tail_ += got;
  if (tail_.size() > tail_limit)
    tail_.erase(0, tail_.size() - tail_limit);
  partial_ += got;
  std::size_t start = 0;
  for (auto nl = partial_.find('\n'); nl != std::string::npos; nl = partial_.find('\n', start)) {
    if (on_line_)
      on_line_(template_pid_, std::string_view{partial_}.substr(start, nl - start));
    start = nl + 1;
  }
  partial_.erase(0, start);
  if (partial_.size() > tail_limit) {  // no newline in sight: pass it on as it is
    if (on_line_)
      on_line_(template_pid_, partial_);
    partial_.clear();
  }
}

bool fork_server::wait_reply(int timeout_ms) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds{timeout_ms};
  for (;;) {
    pollfd p[3] = {{sock_, POLLIN, 0}, {proc_.err, POLLIN, 0}, {proc_.out, POLLIN, 0}};
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                  deadline - std::chrono::steady_clock::now())
                  .count();
    if (left <= 0)
      return false;
    int r = ::poll(p, 3, static_cast<int>(std::min<long long>(left, 1000)));
    if (r < 0 && errno != EINTR)
      return false;
    if (r <= 0)
      continue;
    if (p[0].revents != 0)
      return true;
    read_output();
    // A closed output pipe (the template is exiting) must not spin: stop watching it.
    if ((p[1].revents & (POLLHUP | POLLERR)) && !(p[1].revents & POLLIN))
      close_fd(proc_.err);
    if ((p[2].revents & (POLLHUP | POLLERR)) && !(p[2].revents & POLLIN))
      close_fd(proc_.out);
  }
}

std::string fork_server::template_output() {
  read_output();
  std::string t = tail_;
  while (!t.empty() && (t.back() == '\n' || t.back() == '\r'))
    t.pop_back();
  return t.empty() ? "" : ": " + t;
}

expected<void> fork_server::ensure_template() {
  if (template_alive())
    return {};
  if (proc_.pid > 0)
    stop_template(false);  // dead: reap its guard, drop its fds
  int sv[2] = {-1, -1};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    return failed(std::string{"socketpair: "} + std::strerror(errno));
  spawn_request req = tmpl_;
  req.control_fd = sv[1];
  auto p = process::spawn(req);
  ::close(sv[1]);
  if (!p) {
    ::close(sv[0]);
    return failed("cannot start the template: " + p.error().message);
  }
  proc_ = std::move(*p);
  sock_ = sv[0];
  tail_.clear();
  partial_.clear();
  // The template does not speak the interpreter protocol: its own pipes 3..6 are unused.
  for (int* fd : {&proc_.to_child, &proc_.from_child, &proc_.interrupt, &proc_.dump})
    close_fd(*fd);
  template_pid_ = proc_.python();
  return {};
}

void fork_server::stop_template(bool gracefully) {
  if (proc_.pid <= 0)
    return;
  close_fd(sock_);  // EOF: the template kills its workers' groups and exits
  // A dead or hung template: SIGKILL to the template itself (the guard holds its pid until it
  // reaps it, so it names no other process while the guard runs), so that its guard still
  // cleans up what the workers left (reparented to it). The guard itself only as a last resort.
  if (!gracefully && !readable(proc_.pidfd, 0))
    ::kill(proc_.python(), SIGKILL);
  if (!readable(proc_.pidfd, 2000))
    ::kill(proc_.pid, SIGKILL);  // the template follows it (PDEATHSIG)
  int status = 0;
  while (::waitpid(proc_.pid, &status, 0) < 0 && errno == EINTR) {
  }
  read_output();
  if (!partial_.empty() && on_line_)
    on_line_(template_pid_, partial_);
  partial_.clear();
  close_fds(proc_);
  proc_ = spawned_process{};
  template_pid_ = -1;
}

expected<spawned_process> fork_server::fork_one(const job& j) {
  // A template that died just now (killed, crashed) may not look dead yet: its guard exits
  // only after cleaning up. A request it could not take is made once more, to a new one.
  bool again = false;
  auto r = fork_attempt(j, again);
  if (!r && again)
    r = fork_attempt(j, again);
  return r;
}

expected<spawned_process> fork_server::fork_attempt(const job& j, bool& again) {
  again = false;
  bool fresh = !template_alive();
  if (auto ok = ensure_template(); !ok)
    return std::move(ok).error();
  // The worker's ends first, in the order of the request (1, 2, 3, 4, 5, 6, status), and
  // the host's ends.
  int out[2] = {-1, -1}, err[2] = {-1, -1}, in[2] = {-1, -1}, proto[2] = {-1, -1},
      intr[2] = {-1, -1}, dump[2] = {-1, -1}, status[2] = {-1, -1};
  int shm = -1;
  auto close_all = [&] {
    for (int* p : {out, err, in, proto, intr, dump, status}) {
      close_fd(p[0]);
      close_fd(p[1]);
    }
    close_fd(shm);
  };
  for (int* p : {out, err, in, proto, intr, dump, status})
    if (::pipe2(p, O_CLOEXEC) != 0) {
      int e = errno;
      close_all();
      return failed(std::string{"pipe2: "} + std::strerror(e));
    }
  // The worker's shared memory: the host keeps this fd, the worker gets a copy as its fd 8.
  if (j.shm_bytes > 0)
    shm = make_shared_memory(j.shm_bytes);  // without it: a worker without shared memory
  std::array<int, fds_per_worker + 1> theirs{out[1], err[1], in[0], proto[1], intr[0], dump[1],
                                             status[1], shm};
  std::size_t nfds = shm >= 0 ? fds_per_worker + 1 : fds_per_worker;
  std::string payload;
  for (std::size_t i = 0; i < j.args.size(); ++i) {
    if (i)
      payload.push_back('\0');
    payload += j.args[i];
  }
  if (payload.size() > max_request) {
    close_all();
    return failed("the runner's arguments take " + std::to_string(payload.size()) +
                  " bytes (at most " + std::to_string(max_request) + ")");
  }
  char cbuf[CMSG_SPACE(sizeof(int) * (fds_per_worker + 1))];
  std::memset(cbuf, 0, sizeof cbuf);
  iovec iov{payload.data(), payload.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = cbuf;
  msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
  std::memcpy(CMSG_DATA(c), theirs.data(), sizeof(int) * nfds);
  ssize_t sent;
  while ((sent = ::sendmsg(sock_, &msg, MSG_NOSIGNAL)) < 0 && errno == EINTR) {
  }
  int send_errno = errno;
  // The template has its copies now (or never will): ours of the worker's ends go.
  close_fd(out[1]);
  close_fd(err[1]);
  close_fd(in[0]);
  close_fd(proto[1]);
  close_fd(intr[0]);
  close_fd(dump[1]);
  close_fd(status[1]);
  auto lost = [&](const std::string& why) {
    close_all();
    stop_template(false);
    return failed(why + template_output());
  };
  if (sent < 0) {
    again = true;
    return lost(std::string{"the template is gone ("} + std::strerror(send_errno) + ")");
  }
  // The reply: the worker's pid. The template's death ends the wait too (its socket end
  // closes: EOF). Its output is read meanwhile: a preload import that writes more than a pipe
  // holds must not block it.
  if (!wait_reply(fresh ? first_reply_ms : reply_ms))
    return lost("the template did not answer");
  int pid = 0;
  ssize_t got;
  while ((got = ::recv(sock_, &pid, sizeof pid, 0)) < 0 && errno == EINTR) {
  }
  if (got != static_cast<ssize_t>(sizeof pid)) {
    again = true;  // a worker it may have forked dies with it
    return lost("the template exited");
  }
  read_output();
  if (pid <= 0) {
    close_all();
    return failed(std::string{"fork: "} + std::strerror(-pid));
  }
  spawned_process p;
  p.pid = pid;
  p.status_pipe = true;
  p.pidfd = status[0];
  p.to_child = in[1];
  p.from_child = proto[0];
  p.out = out[0];
  p.err = err[0];
  p.interrupt = intr[1];
  p.dump = dump[0];
  p.shm = shm;
  p.shm_bytes = shm >= 0 ? j.shm_bytes : 0;
  p.context = j.context;
  set_nonblocking(p);
  return p;
}

} // namespace pyvisor::process
