#pragma once

// The interpreter actor's class, shared by the files that implement it (one concept each):
// interpreter_actor.cpp (behavior, start, init, ready), interpreter_actor_rebuild.cpp (durable
// envs rebuilt on a new process), interpreter_actor_stop.cpp (stop sequences, exits, the end),
// interpreter_actor_escalation.cpp (requests forwarded from the actor interface, interrupt
// escalation, heartbeat, kill with the Python stack). Internal to actors/interpreter.

#include "interpreter/interpreter_actor.hpp"

#include <csignal>
#include <unordered_map>

#include <caf/all.hpp>

#include "core/child_protocol.hpp"
#include "interpreter/actor_request.hpp"
#include "interpreter/host_actor.hpp"
#include "interpreter/messages.hpp"
#include "protocol/message.hpp"
#include "pyvisor/actor_interface.hpp"
#include "pyvisor/types.hpp"

namespace pyvisor::interp {

// Internal messages (from the I/O thread, from completions and from our own timers).
using spawned_atom = caf::atom_constant<caf::atom("i_spawned")>;
using init_done_atom = caf::atom_constant<caf::atom("i_initdone")>;
using start_timeout_atom = caf::atom_constant<caf::atom("i_starttmo")>;
using term_atom = caf::atom_constant<caf::atom("i_term")>;
using kill_atom = caf::atom_constant<caf::atom("i_kill")>;
using done_atom = caf::atom_constant<caf::atom("i_done")>;
using intr_check_atom = caf::atom_constant<caf::atom("i_intrchk")>;
using kill_check_atom = caf::atom_constant<caf::atom("i_killchk")>;
using dump_atom = caf::atom_constant<caf::atom("i_dump")>;
using ready_atom = caf::atom_constant<caf::atom("i_ready")>;
using exit_atom = caf::atom_constant<caf::atom("i_exit")>;
using rebuilt_atom = caf::atom_constant<caf::atom("i_rebuilt")>;
using heartbeat_atom = caf::atom_constant<caf::atom("i_beat")>;

// How long a stack dump may take before the kill goes ahead without (more of) it.
constexpr auto dump_poll = std::chrono::milliseconds{25};
constexpr int dump_polls = 20;

/// A finished request: a value or an error, as one message type.
struct call_result {
  std::optional<value> ok;
  error err;
  static call_result from(protocol::reply rep) {
    call_result c;
    if (rep.result)
      c.ok = std::move(*rep.result);
    else
      c.err = std::move(rep.result).error();
    return c;
  }
};

} // namespace pyvisor::interp

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::call_result)

namespace pyvisor::interp {

/// The lifecycle owner of one interpreter: it makes every state transition (the session and
/// the connection only report events), runs the start bound, the stop sequence, the heartbeat
/// and the interrupt escalation, and forwards the actor interface to the request table.
/// Supervised, it outlives its processes: each one is an incarnation (`inc_`), and events of an
/// earlier incarnation are ignored.
class interpreter_actor : public caf::event_based_actor {
public:
  interpreter_actor(caf::actor_config& cfg, actor_args args)
    : caf::event_based_actor(cfg), a_(std::move(args)),
      cell_(std::make_shared<std::shared_ptr<session>>()) {
  }

  caf::behavior make_behavior() override;

private:
  struct pending_call {
    caf::response_promise rp;
    std::uint64_t env = 0;  // make_env: the id to answer with
  };

  std::string label() const;

  /// Starts an incarnation: a new session, the spawn on the I/O thread, the start bound.
  void start();

  void on_ready(const ready_info& info);

  void on_init_done(call_result& r);

  void run_rebuild_step(std::size_t i);

  void on_rebuild_step(std::size_t i, call_result& r);

  void became_ready();

  /// The start failed: remember why, kill the process; its exit reports the rest. Unsupervised,
  /// everything waiting is answered now.
  void abort_start(error e);

  /// Stop for good (stop(), the last handle, the supervisor's exit, ~runtime).
  void begin_stop();

  /// The supervisor ends this process (restart of a sibling, terminate_child); the handle and
  /// the stash stay for the next one.
  void stop_process(const shutdown_policy& p);

  /// The shutdown frame goes after what is being written, then EOF. A SIGSTOPped process
  /// could not even read it. Then SIGTERM after `graceful`, SIGKILL `terminate` later.
  void graceful_end(std::chrono::milliseconds graceful, std::chrono::milliseconds terminate);

  /// What the actor interface refuses in eval_options (a bad timeout; capture, a pointer).
  /// stop() and stop(deadline): answered once the process is reaped; with a deadline, whatever
  /// the stop sequence still takes then is cut short by SIGKILL.
  caf::response_promise stop_request(std::optional<std::chrono::milliseconds> deadline);

  caf::response_promise answer_now(const error& e);

  /// Submits `r` to the request table and answers the requester with its completion.
  caf::response_promise forward(const pyvisor::interp::request& r, deadline d, std::uint64_t env);

  /// A request timed out after its `cancel` frame went out: async code stops at its next
  /// await; if nothing answers within the grace, the code does not yield and gets SIGINT.
  void escalate(std::uint64_t id);

  /// Every `interval` the runner's watchdog must have answered since the last check; when it
  /// has not for `timeout`, the process is killed (with its stack) and that is a crash.
  void on_heartbeat(std::uint64_t inc, std::uint64_t seen);

  /// Sends `xs` to this actor after `d`, through the runtime's timer relay: the relay holds
  /// only this actor's address, so pending timers never keep a stopped interpreter (and its
  /// buffers) in memory.
  template <class... Ts>
  void later(std::chrono::milliseconds d, Ts&&... xs) {
    caf::delayed_anon_send(a_.timers, d, timer_relay_atom::value, address(),
                           caf::make_message(std::forward<Ts>(xs)...));
  }

  /// Kills the process with `e` as the reason for everything pending, after asking the runner
  /// for the Python stack of every thread (faulthandler on child fd 6): the stack travels in
  /// e.traceback, so the error says where the code was stuck.
  void kill_with_stack(error e);

  void on_dump_poll(int polls);

  void finish_kill();

  void schedule_kill_check(std::uint64_t id);

  void log_runtime(const std::string& line);

  /// How the supervisor classifies this end.
  exit_report report_of(const exit_info& info) const;

  void on_exit(exit_info& info);

  /// Answers everything still waiting on this actor and quits.
  void finish(const error& reason, bool requested);

  error end_error() const;

  actor_args a_;
  std::shared_ptr<std::shared_ptr<session>> cell_;  // the current session, for the cleanup
  std::shared_ptr<session> session_;
  caf::actor host_;
  std::uint64_t inc_ = 0;       // the incarnation (process) events must belong to
  bool process_ = false;        // a process of this incarnation exists (not yet exited)
  bool ever_ready_ = false;     // this incarnation became ready
  bool stop_requested_ = false;  // the supervisor ends this incarnation
  bool final_ = false;          // stopping for good
  std::vector<owned_request> rebuild_;
  std::uint64_t rebuild_failed_env_ = 0;
  caf::actor_clock::time_point heartbeat_since_{};
  std::optional<error> kill_reason_;  // a kill waiting for the stack dump
  std::string dump_;
  std::uint64_t next_key_ = 1;
  std::unordered_map<std::uint64_t, pending_call> calls_;
  std::vector<caf::response_promise> waiters_;
  std::vector<caf::response_promise> stoppers_;
};

} // namespace pyvisor::interp
