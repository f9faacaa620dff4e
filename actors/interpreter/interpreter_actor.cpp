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

namespace {

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

} // namespace
} // namespace pyvisor::interp

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::call_result)

namespace pyvisor::interp {

namespace {

/// The lifecycle owner of one interpreter: it makes every state transition (the session and
/// the connection only report events), runs the start bound, the stop sequence and the
/// interrupt escalation, and forwards the actor interface to the request table.
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

  caf::behavior make_behavior() override {
    host_ = spawn_host_actor(system(), a_.hosts, a_.opts.functions, a_.opts.allowed_host_functions,
                             address());
    // Whatever ends this actor (even an unconditional kill): nothing more is admitted, the
    // process group goes, the host actor goes, and `stopped` is published once the process
    // is gone (status::owner_ended).
    attach_functor([t = a_.table, st = a_.st, host = host_, cell = cell_] {
      t->refuse(make_error(errc::interpreter_down, "the interpreter actor ended"), true);
      if (*cell)
        (*cell)->conn().signal_group(SIGKILL);
      else
        st->report_exit(make_error(errc::interpreter_down, "the interpreter actor ended"));
      caf::anon_send_exit(host, caf::exit_reason::user_shutdown);
      st->owner_ended();
    });
    // An exit message (from the supervisor, or a link) means "stop for good".
    set_exit_handler([this](caf::exit_msg& m) {
      if (m.reason == caf::exit_reason::kill) {
        quit(m.reason);
        return;
      }
      begin_stop();
    });
    a_.table->on_abandoned([self = address()](std::uint64_t id) {
      if (auto a = caf::actor_cast<caf::actor>(self))
        caf::anon_send(a, abandoned_atom::value, id);
    });
    if (!a_.supervised)
      start();
    return {
      [this](spawned_atom, std::uint64_t inc, int pid, std::string label) {
        if (inc != inc_)
          return;
        {
          std::lock_guard<std::mutex> g{a_.st->mu};
          a_.st->pid = pid;
          a_.st->label = label;
        }
        a_.table->set_label(std::move(label));
        // A stop or a start failure that came before the process existed.
        if (final_ || stop_requested_ || a_.st->get() != interpreter_state::spawning)
          session_->conn().signal_group(SIGKILL);
      },
      [this](ready_atom, std::uint64_t inc, ready_info& info) {
        if (inc == inc_)
          on_ready(info);
      },
      [this](init_done_atom, std::uint64_t inc, call_result& r) {
        if (inc == inc_)
          on_init_done(r);
      },
      [this](rebuilt_atom, std::uint64_t inc, std::size_t step, call_result& r) {
        if (inc == inc_)
          on_rebuild_step(step, r);
      },
      [this](start_timeout_atom, std::uint64_t inc) {
        if (inc != inc_ || !process_)
          return;
        auto s = a_.st->get();
        if (s == interpreter_state::spawning || s == interpreter_state::initializing)
          abort_start(make_error(
            errc::init_timeout, "interpreter '" + label() +
                                  "' did not finish its init script within " +
                                  std::to_string(a_.opts.init_script_timeout.count()) + " ms"));
      },
      [this](exit_atom, std::uint64_t inc, exit_info& info) {
        if (inc == inc_)
          on_exit(info);
      },
      // The child protocol (supervised).
      [this](core::child_start_atom) {
        if (!a_.supervised || process_ || final_)
          return;
        start();
      },
      [this](core::child_stop_atom, const shutdown_policy& p) {
        if (process_ && !final_)
          stop_process(p);
      },
      [this](eval_atom, eval_request& req) {
        if (auto e = check_actor_options(req.options))
          return answer_now(*e);
        return forward(request_of(req), deadline_for(req.options.timeout, a_.opts.default_timeout), 0);
      },
      [this](call_atom, call_request& req) {
        if (auto e = check_actor_options(req.options))
          return answer_now(*e);
        return forward(request_of(req), deadline_for(req.options.timeout, a_.opts.default_timeout), 0);
      },
      [this](make_env_atom, make_env_request& req) {
        if (auto e = check_timeout(req.timeout))
          return answer_now(*e);
        std::vector<protocol::env_spec> from;
        for (auto& f : req.from) {
          if (auto e = check_env_source(f.only.has_value(), f.except.has_value()))
            return answer_now(*e);
          from.push_back({f.env, f.only, f.except});
        }
        pyvisor::interp::request r;
        r.op = pyvisor::interp::request::op_t::make_env;
        r.env = a_.table->next_env_id();
        r.from = &from;
        r.bound = &req.vars;
        r.durable = req.durable;
        return forward(r, deadline_for(req.timeout, a_.opts.default_timeout), r.env);
      },
      [this](drop_env_atom, std::uint64_t env) { a_.table->drop_env(env); },
      [this](interrupt_atom) {
        auto ids = a_.table->cancel_all();
        if (!ids.empty() && process_)
          session_->conn().interrupt(ids);
        for (auto id : ids)
          schedule_kill_check(id);
        return ids.size();
      },
      [this](done_atom, std::uint64_t key, call_result& r) {
        auto i = calls_.find(key);
        if (i == calls_.end())
          return;
        auto c = std::move(i->second);
        calls_.erase(i);
        if (!r.ok)
          c.rp.deliver(to_caf_error(r.err));
        else if (c.env != 0)
          c.rp.deliver(c.env);  // make_env answers with the new env's id
        else
          c.rp.deliver(std::move(*r.ok));
      },
      [this](abandoned_atom, std::uint64_t id) { escalate(id); },
      [this](intr_check_atom, std::uint64_t id) {
        // Still no answer to the cancel: the code does not yield. Interrupt it.
        if (!a_.table->unacknowledged(id) || !process_)
          return;
        session_->conn().interrupt({id});
        schedule_kill_check(id);
      },
      [this](kill_check_atom, std::uint64_t id) {
        if (!process_ || (!a_.table->unacknowledged(id) && !a_.table->is_pending(id)))
          return;
        kill_with_stack(make_error(errc::interpreter_exited,
                                   "killed: request " + std::to_string(id) +
                                     " ignored cancellation and SIGINT for " +
                                     std::to_string(a_.opts.interrupt.kill_after.count()) +
                                     " ms"));
      },
      [this](heartbeat_atom, std::uint64_t inc, std::uint64_t seen) { on_heartbeat(inc, seen); },
      [this](dump_atom, std::uint64_t inc, int polls) {
        if (inc == inc_)
          on_dump_poll(polls);
      },
      [this](stop_atom) { return stop_request(std::nullopt); },
      [this](stop_atom, std::chrono::milliseconds deadline) { return stop_request(deadline); },
      [this](wait_ready_atom) {
        auto rp = make_response_promise();
        auto s = a_.st->get();
        if (s == interpreter_state::ready)
          rp.deliver(true);
        else if (s == interpreter_state::stopped || s == interpreter_state::draining)
          rp.deliver(to_caf_error(end_error()));
        else
          waiters_.push_back(rp);
        return rp;
      },
      [this](os_pid_atom) {
        std::lock_guard<std::mutex> g{a_.st->mu};
        return a_.st->pid;
      },
      [this](state_atom) { return a_.st->get(); },
      [this](term_atom, std::uint64_t inc) {
        if (inc != inc_ || !process_)
          return;
        // A stopped (SIGSTOP) process would hold the TERM pending for the whole bound.
        session_->conn().signal_group(SIGTERM);
        session_->conn().signal_group(SIGCONT);
      },
      [this](kill_atom, std::uint64_t inc) {
        if (inc == inc_ && process_)
          session_->conn().signal_group(SIGKILL);
      },
    };
  }

private:
  struct pending_call {
    caf::response_promise rp;
    std::uint64_t env = 0;  // make_env: the id to answer with
  };

  std::string label() const {
    std::lock_guard<std::mutex> g{a_.st->mu};
    return a_.st->label.empty() ? a_.opts.label : a_.st->label;
  }

  /// Starts an incarnation: a new session, the spawn on the I/O thread, the start bound.
  void start() {
    ++inc_;
    if (inc_ > 1) {
      std::lock_guard<std::mutex> g{a_.st->mu};
      ++a_.st->restarts;
    }
    heartbeat_since_ = {};
    process_ = true;
    ever_ready_ = false;
    stop_requested_ = false;
    kill_reason_.reset();
    dump_.clear();
    // The init script timeout bounds the whole start: spawn, runner start-up, init and the
    // rebuild of durable envs.
    if (a_.opts.init_script_timeout != forever)
      later(a_.opts.init_script_timeout, start_timeout_atom::value, inc_);
    session::config cfg;
    cfg.limits.max_frame_bytes = a_.opts.max_frame_bytes;
    if (!a_.opts.busy_limits.disabled) {
      cfg.marks.high = a_.opts.busy_limits.high_water;
      cfg.marks.low = a_.opts.busy_limits.low_water;
    } else {
      cfg.marks.high = cfg.marks.low = std::numeric_limits<std::size_t>::max();
    }
    cfg.label = label();
    cfg.log = a_.log;
    session::owner_events ev;
    ev.ready = [self = address(), inc = inc_](ready_info info) {
      if (auto a = caf::actor_cast<caf::actor>(self))
        caf::anon_send(a, ready_atom::value, inc, std::move(info));
    };
    ev.exited = [self = address(), st = a_.st, t = a_.table, inc = inc_](exit_info info) {
      if (st->report_exit(info.reason)) {
        if (auto a = caf::actor_cast<caf::actor>(self))
          caf::anon_send(a, exit_atom::value, inc, std::move(info));
        return;
      }
      t->refuse(info.reason, false);  // the owner is gone: nothing will be admitted again
    };
    session_ = session::make(*a_.loop, a_.table, host_, std::move(cfg), std::move(ev));
    *cell_ = session_;
    a_.loop->post([s = session_, req = a_.spawn, self = address(), inc = inc_]() mutable {
      auto p = process::spawn(req);
      if (!p) {
        // Not attached: no exit event will come, so report the end ourselves.
        s->spawn_failed();
        exit_info info;
        info.reason = p.error();
        if (auto a = caf::actor_cast<caf::actor>(self))
          caf::anon_send(a, exit_atom::value, inc, std::move(info));
        return;
      }
      int pid = p->python();
      s->attach(std::move(*p));
      if (auto a = caf::actor_cast<caf::actor>(self))
        caf::anon_send(a, spawned_atom::value, inc, pid, s->label());
    });
  }

  void on_ready(const ready_info& info) {
    {
      std::lock_guard<std::mutex> g{a_.st->mu};
      a_.st->info = info;
    }
    if (a_.st->get() != interpreter_state::spawning)
      return;
    a_.st->set(interpreter_state::initializing);
    pyvisor::interp::request r;
    r.op = pyvisor::interp::request::op_t::init;
    r.text = a_.opts.init_script.code;
    r.bound = &a_.opts.init_script.vars;
    r.file = a_.opts.init_script.file;
    a_.table->submit(
      r, deadline::none(),  // the start bound covers it
      [self = address(), inc = inc_](protocol::reply rep) {
        if (auto a = caf::actor_cast<caf::actor>(self))
          caf::anon_send(a, init_done_atom::value, inc, call_result::from(std::move(rep)));
      },
      /*priority=*/true);
  }

  void on_init_done(call_result& r) {
    if (a_.st->get() != interpreter_state::initializing)
      return;
    if (!r.ok) {
      auto e = std::move(r.err);
      if (e.code != errc::interpreter_exited && e.code != errc::protocol_error &&
          e.code != errc::frame_too_large)
        e.code = errc::init_failed;
      abort_start(std::move(e));
      return;
    }
    // Durable envs of the last process come back before any stashed request runs.
    rebuild_ = a_.table->rebuild_plan();
    rebuild_failed_env_ = 0;
    run_rebuild_step(0);
  }

  void run_rebuild_step(std::size_t i) {
    while (i < rebuild_.size() && rebuild_[i].env == rebuild_failed_env_ && rebuild_failed_env_ != 0)
      ++i;  // the rest of an env whose rebuild failed
    if (i >= rebuild_.size()) {
      rebuild_.clear();
      became_ready();
      return;
    }
    auto r = rebuild_[i].view();
    a_.table->submit(
      r, deadline::none(),
      [self = address(), inc = inc_, i](protocol::reply rep) {
        if (auto a = caf::actor_cast<caf::actor>(self))
          caf::anon_send(a, rebuilt_atom::value, inc, i, call_result::from(std::move(rep)));
      },
      /*priority=*/true);
  }

  void on_rebuild_step(std::size_t i, call_result& r) {
    if (i >= rebuild_.size())
      return;
    if (!r.ok) {
      auto env = rebuild_[i].env;
      a_.table->env_rebuild_failed(env, r.err);
      log_runtime("durable env " + std::to_string(env) + " could not be rebuilt: " +
                  r.err.to_string());
      rebuild_failed_env_ = env;
    }
    run_rebuild_step(i + 1);
  }

  void became_ready() {
    ever_ready_ = true;
    {
      std::lock_guard<std::mutex> g{a_.st->mu};
      a_.st->ready_since = std::chrono::steady_clock::now();
    }
    a_.st->set(interpreter_state::ready);
    a_.table->open();
    for (auto& w : waiters_)
      w.deliver(true);
    waiters_.clear();
    if (a_.opts.heartbeat.interval != forever)
      later(a_.opts.heartbeat.interval, heartbeat_atom::value, inc_, session_->conn().heartbeats());
    if (a_.supervised) {
      int pid;
      {
        std::lock_guard<std::mutex> g{a_.st->mu};
        pid = a_.st->pid;
      }
      if (auto sup = caf::actor_cast<caf::actor>(a_.supervisor))
        send(sup, core::child_up_atom::value, address(), pid);
    }
  }

  /// The start failed: remember why, kill the process; its exit reports the rest. Unsupervised,
  /// everything waiting is answered now.
  void abort_start(error e) {
    session_->set_exit_reason(e);
    if (!a_.supervised) {
      a_.table->refuse(e, false);
      a_.st->set(interpreter_state::draining, e);
      for (auto& w : waiters_)
        w.deliver(to_caf_error(e));
      waiters_.clear();
    }
    session_->conn().signal_group(SIGKILL);
  }

  /// Stop for good (stop(), the last handle, the supervisor's exit, ~runtime).
  void begin_stop() {
    if (final_)
      return;
    final_ = true;
    auto s = a_.st->get();
    if (s == interpreter_state::stopped)
      return;
    a_.table->refuse(make_error(errc::interpreter_down, "interpreter '" + label() + "' is stopping"),
                     true);
    auto err = make_error(errc::interpreter_down, "interpreter is stopping");
    for (auto& w : waiters_)
      w.deliver(to_caf_error(err));
    waiters_.clear();
    if (!process_) {
      // Supervised, between two processes: nothing runs.
      a_.st->set(interpreter_state::stopped, err);
      finish(err, true);
      return;
    }
    a_.st->set(interpreter_state::draining);
    session_->set_stopping();
    // Before ready there is nothing to be graceful about.
    if (s == interpreter_state::spawning || s == interpreter_state::initializing) {
      session_->conn().signal_group(SIGKILL);
      return;
    }
    graceful_end(a_.opts.shutdown.graceful, a_.opts.shutdown.terminate);
  }

  /// The supervisor ends this process (restart of a sibling, terminate_child); the handle and
  /// the stash stay for the next one.
  void stop_process(const shutdown_policy& p) {
    if (stop_requested_)
      return;
    stop_requested_ = true;
    session_->set_stopping();
    auto s = a_.st->get();
    if (p.brutal_kill || s == interpreter_state::spawning || s == interpreter_state::initializing) {
      session_->conn().signal_group(SIGKILL);
      return;
    }
    if (p.grace == forever) {
      graceful_end(forever, forever);
      return;
    }
    graceful_end(p.grace, std::chrono::milliseconds{0});
  }

  /// The shutdown frame goes after what is being written, then EOF. A SIGSTOPped process
  /// could not even read it. Then SIGTERM after `graceful`, SIGKILL `terminate` later.
  void graceful_end(std::chrono::milliseconds graceful, std::chrono::milliseconds terminate) {
    session_->conn().write(protocol::encode_shutdown());
    session_->conn().close_after_flush();
    session_->conn().signal_group(SIGCONT);
    if (graceful == forever)
      return;
    if (terminate.count() > 0)
      later(graceful, term_atom::value, inc_);
    if (terminate != forever)
      later(graceful + terminate, kill_atom::value, inc_);
  }

  /// What the actor interface refuses in eval_options (a bad timeout; capture, a pointer).
  /// stop() and stop(deadline): answered once the process is reaped; with a deadline, whatever
  /// the stop sequence still takes then is cut short by SIGKILL.
  caf::response_promise stop_request(std::optional<std::chrono::milliseconds> deadline) {
    auto rp = make_response_promise();
    if (a_.supervised) {
      rp.deliver(to_caf_error(make_error(
        errc::invalid_argument,
        "a supervised interpreter is stopped through its supervisor (terminate_child)")));
      return rp;
    }
    if (a_.st->get() == interpreter_state::stopped) {
      rp.deliver(true);
      return rp;
    }
    stoppers_.push_back(rp);
    begin_stop();
    if (deadline && process_)
      later(*deadline, kill_atom::value, inc_);
    return rp;
  }

  caf::response_promise answer_now(const error& e) {
    auto rp = make_response_promise();
    rp.deliver(to_caf_error(e));
    return rp;
  }

  /// Submits `r` to the request table and answers the requester with its completion.
  caf::response_promise forward(const pyvisor::interp::request& r, deadline d, std::uint64_t env) {
    auto rp = make_response_promise();
    auto key = next_key_++;
    calls_.emplace(key, pending_call{rp, env});
    a_.table->submit(r, d, [self = address(), key](protocol::reply rep) {
      if (auto a = caf::actor_cast<caf::actor>(self))
        caf::anon_send(a, done_atom::value, key, call_result::from(std::move(rep)));
    });
    return rp;
  }

  /// A request timed out after its `cancel` frame went out: async code stops at its next
  /// await; if nothing answers within the grace, the code does not yield and gets SIGINT.
  void escalate(std::uint64_t id) {
    later(a_.opts.interrupt.grace, intr_check_atom::value, id);
  }

  /// Every `interval` the runner's watchdog must have answered since the last check; when it
  /// has not for `timeout`, the process is killed (with its stack) and that is a crash.
  void on_heartbeat(std::uint64_t inc, std::uint64_t seen) {
    if (inc != inc_ || !process_ || a_.st->get() != interpreter_state::ready || stop_requested_)
      return;
    auto& conn = session_->conn();
    auto now_seen = conn.heartbeats();
    auto now = clock().now();
    if (now_seen != seen || heartbeat_since_ == caf::actor_clock::time_point{})
      heartbeat_since_ = now;
    if (now - heartbeat_since_ >= a_.opts.heartbeat.timeout) {
      heartbeat_since_ = {};
      kill_with_stack(make_error(
        errc::interpreter_exited,
        "killed: no heartbeat from the runner for " +
          std::to_string(a_.opts.heartbeat.timeout.count()) +
          " ms (stopped, or native code holding the GIL)"));
      return;
    }
    later(a_.opts.heartbeat.interval, heartbeat_atom::value, inc_, now_seen);
  }

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
  void kill_with_stack(error e) {
    if (kill_reason_)
      return;  // a kill is under way
    kill_reason_ = std::move(e);
    if (!session_->conn().request_stack_dump()) {
      finish_kill();
      return;
    }
    later(dump_poll, dump_atom::value, inc_, 1);
  }

  void on_dump_poll(int polls) {
    if (!kill_reason_)
      return;
    auto got = session_->conn().read_stack_dump(dump_);
    // Done when the dump stopped growing, or when it never came (a stopped process).
    if ((dump_.empty() || got) && polls < dump_polls) {
      later(dump_poll, dump_atom::value, inc_, polls + 1);
      return;
    }
    finish_kill();
  }

  void finish_kill() {
    auto e = std::move(*kill_reason_);
    std::size_t start = 0;
    while (start < dump_.size()) {
      auto end = dump_.find('\n', start);
      if (end == std::string::npos)
        end = dump_.size();
      if (end > start)
        e.traceback.push_back(dump_.substr(start, end - start));
      start = end + 1;
    }
    if (!e.traceback.empty())
      e.message += "; Python stack at the kill in traceback";
    dump_.clear();
    session_->set_exit_reason(std::move(e));
    session_->conn().signal_group(SIGKILL);
  }

  void schedule_kill_check(std::uint64_t id) {
    if (a_.opts.interrupt.kill_after != forever)
      later(a_.opts.interrupt.kill_after, kill_check_atom::value, id);
  }

  void log_runtime(const std::string& line) {
    if (a_.log)
      a_.log(log_record{label(), a_.st->pid, log_source::runtime, line, 0});
  }

  /// How the supervisor classifies this end.
  exit_report report_of(const exit_info& info) const {
    exit_report r;
    r.code = info.code;
    r.signal = info.signal;
    r.reason = info.reason;
    if (stop_requested_)
      r.kind = exit_kind::shutdown;
    else if (!ever_ready_)
      r.kind = exit_kind::start_failed;
    else if (info.code == 0 && info.signal == 0 && info.reason.code == errc::interpreter_exited)
      r.kind = exit_kind::normal;
    else
      r.kind = exit_kind::crash;
    return r;
  }

  void on_exit(exit_info& info) {
    process_ = false;
    auto report = report_of(info);
    if (a_.supervised && !final_) {
      // The handle stays: requests sent to the process were answered; new ones wait in the
      // stash for the next process, which the supervisor starts when its policy says so.
      a_.table->restarting(info.reason, a_.opts.restart_stash);
      a_.st->restarting(report);
      if (auto sup = caf::actor_cast<caf::actor>(a_.supervisor))
        send(sup, core::child_down_atom::value, address(), report);
      return;
    }
    {
      std::lock_guard<std::mutex> g{a_.st->mu};
      a_.st->last_exit = report;
      a_.st->last_exit_time = std::chrono::system_clock::now();
    }
    a_.table->refuse(info.reason, false);
    a_.st->set(interpreter_state::stopped, info.reason);
    finish(info.reason, final_);
  }

  /// Answers everything still waiting on this actor and quits.
  void finish(const error& reason, bool requested) {
    auto cerr = to_caf_error(reason);
    for (auto& w : waiters_)
      w.deliver(cerr);
    waiters_.clear();
    // Completions of requests answered at the exit arrived before this message; anything
    // left gets the reason (each promise is delivered once).
    for (auto& [key, c] : calls_)
      c.rp.deliver(cerr);
    calls_.clear();
    for (auto& s : stoppers_)
      s.deliver(true);
    stoppers_.clear();
    if (requested)
      quit(caf::exit_reason::normal);
    else
      quit(cerr);
  }

  error end_error() const {
    std::lock_guard<std::mutex> g{a_.st->mu};
    if (a_.st->end_error)
      return *a_.st->end_error;
    return make_error(errc::interpreter_down, "interpreter is stopped");
  }

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

} // namespace

caf::actor spawn_interpreter_actor(caf::actor_system& sys, actor_args args) {
  return sys.spawn<interpreter_actor>(std::move(args));
}

} // namespace pyvisor::interp
