#pragma once

#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "process/spawn.hpp"
#include "pyvisor/expected.hpp"

namespace pyvisor::process {

/// A spawn result on its way to its owner: the process's fds are closed unless it is taken
/// (a worker that is never attached then ends on EOF).
struct owned_process {
  expected<spawned_process> result;
  bool taken = false;

  explicit owned_process(expected<spawned_process> r) : result(std::move(r)) {}
  ~owned_process() {
    if (!taken && result)
      close_fds(*result);
  }
  owned_process(const owned_process&) = delete;
  owned_process& operator=(const owned_process&) = delete;
  expected<spawned_process> take() {
    taken = true;
    return std::move(result);
  }
};

/// A fork server (`spawn = "fork_server"`, docs/architecture.md "Fork server"): a warm template
/// process, started like a cold interpreter of the same configuration (guard, limits, identity,
/// environment, working directory) but running `pyvisor._fork_server`, which imports the
/// runner and the preload modules once and then forks workers on request. A worker costs a
/// fork of a warm interpreter instead of a Python start.
///
/// Requests go over a SOCK_SEQPACKET socket (the template's fd 7) carrying the worker's fds
/// (SCM_RIGHTS); the protocol is in python/pyvisor/_fork_server.py. A worker is the template's
/// child: its exit comes as a wait status on a pipe (spawned_process::status_pipe).
///
/// One thread per fork server starts the template (so the template's guard dies with it:
/// PR_SET_PDEATHSIG) and serves requests in order; a request blocks only that thread. A
/// template that died (killed, crashed) is started again for the next request; the workers
/// it had die with it and are restarted by their supervisors.
class fork_server {
public:
  using done_fn = std::function<void(expected<spawned_process>)>;
  /// A line the template wrote on its stdout or stderr (e.g. a failed preload import), and its
  /// pid. Called on the fork server's thread.
  using line_fn = std::function<void(int pid, std::string_view line)>;

  /// `tmpl`: the template's command (its runner arguments end with `--control-fd 7`); its
  /// control_fd is set here. Nothing starts before the first spawn. The template's output is
  /// read after each fork and at its end.
  explicit fork_server(spawn_request tmpl, line_fn on_line = {});
  ~fork_server();  ///< shutdown()
  /// Serves the requests made so far, then ends the template (EOF on its socket; SIGKILL
  /// after 2 s) and joins the thread. Workers still running die with the template. Later
  /// requests fail at once (errc::shutting_down). Idempotent; not from a `done` callback.
  void shutdown();
  fork_server(const fork_server&) = delete;
  fork_server& operator=(const fork_server&) = delete;

  /// Asks for a worker running the runner with `runner_args` (what follows the runner
  /// directory on a cold interpreter's command line). `done` runs on the fork server's
  /// thread, once, with the worker or the reason there is none (errc::spawn_failed).
  /// `shm_bytes` > 0: the worker gets shared memory as its fd 8 (spawn_request::shm_bytes).
  void spawn(std::vector<std::string> runner_args, exit_context context, std::size_t shm_bytes,
             done_fn done);

private:
  struct job {
    std::vector<std::string> args;
    exit_context context;
    std::size_t shm_bytes = 0;
    done_fn done;
  };

  void run();
  expected<spawned_process> fork_one(const job& j);
  expected<spawned_process> fork_attempt(const job& j, bool& again);
  expected<void> ensure_template();
  void stop_template(bool gracefully);
  bool template_alive() const;
  std::string template_output();
  void read_output();
  bool wait_reply(int timeout_ms);

  spawn_request tmpl_;
  std::mutex mu_;  ///< guards jobs_ and stopping_
  std::condition_variable cv_;
  std::deque<job> jobs_;
  bool stopping_ = false;
  // Owned by the thread.
  spawned_process proc_;
  int sock_ = -1;
  line_fn on_line_;
  std::string tail_;  ///< the last bytes the template wrote on stdout/stderr
  std::string partial_;  ///< a line not complete yet
  pid_t template_pid_ = -1;  ///< the template's Python process, for its log lines
  std::mutex join_mu_;  ///< shutdown() from two threads joins once
  std::thread thread_;
};

} // namespace pyvisor::process
