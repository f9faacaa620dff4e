#include "interpreter/interpreter_actor.hpp"

#include <csignal>
#include <unordered_map>

#include <caf/all.hpp>

#include "protocol/message.hpp"
#include "pyvisor/actor_interface.hpp"

namespace pyvisor::interp {

namespace {

// Internal messages (from the I/O thread, from completions and from our own timers).
using spawned_atom = caf::atom_constant<caf::atom("i_spawned")>;
using init_done_atom = caf::atom_constant<caf::atom("i_initdone")>;
using start_timeout_atom = caf::atom_constant<caf::atom("i_starttmo")>;
using term_atom = caf::atom_constant<caf::atom("i_term")>;
using kill_atom = caf::atom_constant<caf::atom("i_kill")>;
using eval_done_atom = caf::atom_constant<caf::atom("i_evaldone")>;
using eval_timeout_atom = caf::atom_constant<caf::atom("i_evaltmo")>;

/// A finished call: a value or an error, as one message type.
struct call_result {
  std::optional<value> ok;
  error err;
  static call_result from(expected<value> r) {
    call_result c;
    if (r)
      c.ok = std::move(*r);
    else
      c.err = std::move(r).error();
    return c;
  }
};

} // namespace
} // namespace pyvisor::interp

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::ready_info)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::exit_info)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::call_result)

namespace pyvisor::interp {

namespace {

class interpreter_actor : public caf::event_based_actor {
public:
  interpreter_actor(caf::actor_config& cfg, actor_args args)
    : caf::event_based_actor(cfg), a_(std::move(args)) {
  }

  caf::behavior make_behavior() override {
    auto ch = a_.ch;
    // Whatever ends this actor (even an unconditional kill), the process group goes with it;
    // once reaped this is a no-op.
    attach_functor([ch] { ch->signal_group(SIGKILL); });
    // A linked supervisor's exit message means "stop": run the stop sequence, then quit.
    set_exit_handler([this](caf::exit_msg& m) {
      if (m.reason == caf::exit_reason::kill) {
        quit(m.reason);
        return;
      }
      begin_stop();
    });
    // The channel (and the completions it stores) hold this actor only weakly: the actor
    // owns the channel, so a strong reference would be a cycle that leaks both whenever no
    // exit event comes to break it (a failed spawn).
    ch->on_event([self = address(), st = a_.st](channel_event ev) {
      // The final state is published here, not only by the actor: an actor killed
      // unconditionally would never do it, and blocking stop() callers wait for it.
      if (auto x = std::get_if<exit_info>(&ev))
        st->set(interpreter_state::stopped, x->reason);
      auto a = caf::actor_cast<caf::actor>(self);
      if (!a)
        return;
      if (auto r = std::get_if<ready_info>(&ev))
        caf::anon_send(a, std::move(*r));
      else
        caf::anon_send(a, std::move(std::get<exit_info>(ev)));
    });
    start();
    return {
      [this](spawned_atom, int pid) {
        {
          std::lock_guard<std::mutex> g{a_.st->mu};
          a_.st->pid = pid;
        }
        // A stop or a start failure that came before the process existed.
        if (stopping_ || a_.st->get() != interpreter_state::spawning)
          a_.ch->signal_group(SIGKILL);
      },
      [this](const ready_info& info) { on_ready(info); },
      [this](init_done_atom, call_result& r) { on_init_done(r); },
      [this](start_timeout_atom) {
        auto s = a_.st->get();
        if (s == interpreter_state::spawning || s == interpreter_state::initializing)
          abort_start(make_error(
            errc::init_timeout, "interpreter '" + a_.ch->label() +
                                  "' did not finish its init script within " +
                                  std::to_string(a_.opts.init_script_timeout.count()) + " ms"));
      },
      [this](exit_info& info) { on_exit(info); },
      [this](eval_atom, eval_request& req) { return eval(req); },
      [this](eval_done_atom, std::uint64_t id, call_result& r) {
        auto i = evals_.find(id);
        if (i == evals_.end())
          return;
        auto rp = std::move(i->second);
        evals_.erase(i);
        if (r.ok)
          rp.deliver(std::move(*r.ok));
        else
          rp.deliver(to_caf_error(r.err));
      },
      [this](eval_timeout_atom, std::uint64_t id, std::int64_t ms) {
        auto i = evals_.find(id);
        if (i == evals_.end())
          return;
        auto rp = std::move(i->second);
        evals_.erase(i);
        a_.ch->abandon(id);
        rp.deliver(to_caf_error(make_error(
          errc::timeout, "eval did not finish within " + std::to_string(ms) + " ms")));
      },
      [this](stop_atom) {
        auto rp = make_response_promise();
        if (a_.st->get() == interpreter_state::stopped) {
          rp.deliver(true);
          return rp;
        }
        stoppers_.push_back(rp);
        begin_stop();
        return rp;
      },
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
      [this](os_pid_atom) { return a_.ch->pid(); },
      [this](state_atom) { return a_.st->get(); },
      [this](term_atom) { a_.ch->signal_group(SIGTERM); },
      [this](kill_atom) { a_.ch->signal_group(SIGKILL); },
    };
  }

private:
  void start() {
    // The init script timeout bounds the whole start: spawn, runner start-up and init.
    delayed_send(this, a_.opts.init_script_timeout, start_timeout_atom::value);
    a_.loop->post([ch = a_.ch, req = a_.spawn, self = address()]() mutable {
      auto p = process::spawn(req);
      if (!p) {
        // Not attached: no exit event will come, so report the end ourselves.
        exit_info info;
        info.reason = p.error();
        if (auto a = caf::actor_cast<caf::actor>(self))
          caf::anon_send(a, std::move(info));
        return;
      }
      int pid = p->pid;
      ch->attach(std::move(*p));
      if (auto a = caf::actor_cast<caf::actor>(self))
        caf::anon_send(a, spawned_atom::value, pid);
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
    auto id = a_.ch->next_id();
    auto frame = protocol::encode_code_request(id, "init", a_.opts.init_script.code,
                                               a_.opts.init_script.vars,
                                               a_.opts.init_script.file, 1);
    a_.ch->submit(
      id, std::move(frame),
      [self = address()](expected<value> r) {
        if (auto a = caf::actor_cast<caf::actor>(self))
          caf::anon_send(a, init_done_atom::value, call_result::from(std::move(r)));
      },
      /*priority=*/true);
  }

  void on_init_done(call_result& r) {
    if (a_.st->get() != interpreter_state::initializing)
      return;
    if (r.ok) {
      a_.st->set(interpreter_state::ready);
      a_.ch->open_gate();
      for (auto& w : waiters_)
        w.deliver(true);
      waiters_.clear();
      return;
    }
    auto e = std::move(r.err);
    if (e.code != errc::interpreter_exited && e.code != errc::protocol_error &&
        e.code != errc::frame_too_large)
      e.code = errc::init_failed;
    abort_start(std::move(e));
  }

  /// The start failed: remember why, fail everything waiting, kill the process; the actor
  /// quits when the exit event arrives.
  void abort_start(error e) {
    a_.ch->set_exit_reason(e);
    a_.ch->fail_all(e);
    a_.st->set(interpreter_state::draining, e);
    for (auto& w : waiters_)
      w.deliver(to_caf_error(e));
    waiters_.clear();
    a_.ch->signal_group(SIGKILL);
  }

  void begin_stop() {
    if (stopping_)
      return;
    stopping_ = true;
    auto s = a_.st->get();
    if (s == interpreter_state::stopped)
      return;
    a_.st->set(interpreter_state::draining);
    a_.ch->begin_stop();
    auto err = make_error(errc::interpreter_down, "interpreter is stopping");
    for (auto& w : waiters_)
      w.deliver(to_caf_error(err));
    waiters_.clear();
    // Before ready there is nothing to be graceful about.
    if (s == interpreter_state::spawning || s == interpreter_state::initializing) {
      a_.ch->signal_group(SIGKILL);
      return;
    }
    auto& seq = a_.opts.shutdown;
    delayed_send(this, seq.graceful, term_atom::value);
    delayed_send(this, seq.graceful + seq.terminate, kill_atom::value);
  }

  caf::response_promise eval(eval_request& req) {
    auto rp = make_response_promise();
    auto s = a_.st->get();
    if (s == interpreter_state::draining || s == interpreter_state::stopped) {
      rp.deliver(to_caf_error(end_error()));
      return rp;
    }
    auto id = a_.ch->next_id();
    auto frame = protocol::encode_code_request(id, "eval", req.code, req.vars,
                                               req.options.file, req.options.line);
    evals_.emplace(id, rp);
    a_.ch->submit(id, std::move(frame), [self = address(), id](expected<value> r) {
      if (auto a = caf::actor_cast<caf::actor>(self))
        caf::anon_send(a, eval_done_atom::value, id, call_result::from(std::move(r)));
    });
    auto timeout = req.options.timeout.count() > 0 ? req.options.timeout
                                                   : a_.opts.default_timeout;
    if (timeout.count() > 0)
      delayed_send(this, timeout, eval_timeout_atom::value, id,
                   static_cast<std::int64_t>(timeout.count()));
    return rp;
  }

  void on_exit(exit_info& info) {
    a_.st->set(interpreter_state::stopped, info.reason);
    auto cerr = to_caf_error(info.reason);
    for (auto& w : waiters_)
      w.deliver(cerr);
    waiters_.clear();
    for (auto& [id, rp] : evals_)
      rp.deliver(cerr);
    evals_.clear();
    for (auto& s : stoppers_)
      s.deliver(true);
    stoppers_.clear();
    if (info.requested || stopping_)
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
  bool stopping_ = false;
  std::unordered_map<std::uint64_t, caf::response_promise> evals_;
  std::vector<caf::response_promise> waiters_;
  std::vector<caf::response_promise> stoppers_;
};

} // namespace

caf::actor spawn_interpreter_actor(caf::actor_system& sys, actor_args args) {
  return sys.spawn<interpreter_actor>(std::move(args));
}

} // namespace pyvisor::interp
