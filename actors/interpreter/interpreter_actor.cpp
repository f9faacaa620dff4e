#include "interpreter/interpreter_actor.hpp"

#include <csignal>
#include <unordered_map>

#include <caf/all.hpp>

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
using timeout_atom = caf::atom_constant<caf::atom("i_timeout")>;
using intr_check_atom = caf::atom_constant<caf::atom("i_intrchk")>;
using kill_check_atom = caf::atom_constant<caf::atom("i_killchk")>;
using dump_atom = caf::atom_constant<caf::atom("i_dump")>;

// How long a stack dump may take before the kill goes ahead without (more of) it.
constexpr auto dump_poll = std::chrono::milliseconds{25};
constexpr int dump_polls = 20;

/// A finished call: a value or an error, as one message type.
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

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::ready_info)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::exit_info)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::call_result)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::host_message)

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
    // The lambda lives inside the channel, so a raw pointer to it is always valid here.
    ch->on_event([self = address(), st = a_.st, raw = ch.get()](channel_event ev) {
      // The final state is published here, not only by the actor: an actor killed
      // unconditionally would never do it, and blocking stop() callers wait for it.
      if (auto x = std::get_if<exit_info>(&ev))
        st->set(interpreter_state::stopped, x->reason);
      auto a = caf::actor_cast<caf::actor>(self);
      if (auto h = std::get_if<host_message>(&ev)) {
        if (a)
          caf::anon_send(a, std::move(*h));
        else
          raw->host_done();
        return;
      }
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
      [this](host_message& h) { on_host(h); },
      [this](eval_atom, eval_request& req) {
        protocol::request_extras x{req.env, false, req.options.bytes_as_bytearray};
        auto id = a_.ch->next_id();
        return send_request(id,
                       protocol::encode_code_request(id, "eval", req.code, req.vars,
                                                     req.options.file, req.options.line, x),
                       req.options.timeout, 0);
      },
      [this](call_atom, call_request& req) {
        protocol::request_extras x{req.env, false, req.options.bytes_as_bytearray};
        auto id = a_.ch->next_id();
        return send_request(id, protocol::encode_call(id, req.name, req.args, req.kwargs, x),
                       req.options.timeout, 0);
      },
      [this](make_env_atom, make_env_request& req) {
        std::vector<protocol::env_spec> from;
        for (auto& f : req.from) {
          if (f.only && f.except) {
            auto rp = make_response_promise();
            rp.deliver(to_caf_error(make_error(
              errc::invalid_argument, "an env source takes `only` or `except`, not both")));
            return rp;
          }
          from.push_back({f.env, f.only, f.except});
        }
        auto env = a_.ch->next_env_id();
        auto id = a_.ch->next_id();
        return send_request(id, protocol::encode_make_env(id, env, from, req.vars),
                       std::chrono::milliseconds{0}, env);
      },
      [this](drop_env_atom, std::uint64_t env) { a_.ch->notify(protocol::encode_drop_env(env)); },
      [this](interrupt_atom) {
        auto ids = a_.ch->interrupt_all();
        for (auto id : ids)
          schedule_kill_check(id);
        return ids.size();
      },
      [this](done_atom, std::uint64_t id, call_result& r) {
        auto i = calls_.find(id);
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
      [this](timeout_atom, std::uint64_t id, std::int64_t ms) {
        auto i = calls_.find(id);
        if (i == calls_.end())
          return;
        auto c = std::move(i->second);
        calls_.erase(i);
        if (a_.ch->abandon(id))
          escalate(id);
        c.rp.deliver(to_caf_error(make_error(
          errc::timeout, "request did not finish within " + std::to_string(ms) + " ms")));
      },
      [this](abandoned_atom, std::uint64_t id) { escalate(id); },
      [this](intr_check_atom, std::uint64_t id) {
        // Still no answer to the cancel: the code does not yield. Interrupt it.
        if (!a_.ch->unacknowledged(id))
          return;
        a_.ch->interrupt({id});
        schedule_kill_check(id);
      },
      [this](kill_check_atom, std::uint64_t id) {
        if (!a_.ch->unacknowledged(id) && !a_.ch->is_pending(id))
          return;
        kill_with_stack(make_error(errc::interpreter_exited,
                                   "killed: request " + std::to_string(id) +
                                     " ignored cancellation and SIGINT for " +
                                     std::to_string(a_.opts.interrupt.kill_after.count()) +
                                     " ms"));
      },
      [this](dump_atom, int polls) { on_dump_poll(polls); },
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
      [this](term_atom) {
        // A stopped (SIGSTOP) process would hold the TERM pending for the whole bound.
        a_.ch->signal_group(SIGTERM);
        a_.ch->signal_group(SIGCONT);
      },
      [this](kill_atom) { a_.ch->signal_group(SIGKILL); },
    };
  }

private:
  struct pending_call {
    caf::response_promise rp;
    std::uint64_t env = 0;  // make_env: the id to answer with
  };

  void start() {
    // The init script timeout bounds the whole start: spawn, runner start-up and init.
    later(a_.opts.init_script_timeout, start_timeout_atom::value);
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
      [self = address()](protocol::reply r) {
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
    // A SIGSTOPped process could not even read the shutdown frame.
    a_.ch->signal_group(SIGCONT);
    auto& seq = a_.opts.shutdown;
    later(seq.graceful, term_atom::value);
    later(seq.graceful + seq.terminate, kill_atom::value);
  }

  /// Sends a request and answers `rp` when its reply comes (or its timeout passes).
  caf::response_promise send_request(std::uint64_t id, std::string frame,
                                std::chrono::milliseconds timeout, std::uint64_t env) {
    auto rp = make_response_promise();
    auto s = a_.st->get();
    if (s == interpreter_state::draining || s == interpreter_state::stopped) {
      rp.deliver(to_caf_error(end_error()));
      return rp;
    }
    calls_.emplace(id, pending_call{rp, env});
    a_.ch->submit(id, std::move(frame), [self = address(), id](protocol::reply r) {
      if (auto a = caf::actor_cast<caf::actor>(self))
        caf::anon_send(a, done_atom::value, id, call_result::from(std::move(r)));
    });
    auto t = timeout.count() > 0 ? timeout : a_.opts.default_timeout;
    if (t.count() > 0)
      later(t, timeout_atom::value, id, static_cast<std::int64_t>(t.count()));
    return rp;
  }

  /// A request was abandoned after its `cancel` frame went out: async code stops at its next
  /// await; if nothing answers within the grace, the code does not yield and gets SIGINT.
  void escalate(std::uint64_t id) {
    later(a_.opts.interrupt.grace, intr_check_atom::value, id);
  }

  /// Sends `xs` to this actor after `d`, through the runtime's timer relay: the relay holds
  /// only this actor's address, so pending timers never keep a stopped interpreter (and its
  /// channel and buffers) in memory.
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
    if (!a_.ch->request_stack_dump()) {
      finish_kill();
      return;
    }
    later(dump_poll, dump_atom::value, 1);
  }

  void on_dump_poll(int polls) {
    if (!kill_reason_)
      return;
    auto got = a_.ch->read_stack_dump(dump_);
    // Done when the dump stopped growing, or when it never came (a stopped process).
    if ((dump_.empty() || got) && polls < dump_polls) {
      later(dump_poll, dump_atom::value, polls + 1);
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
    a_.ch->set_exit_reason(std::move(e));
    a_.ch->signal_group(SIGKILL);
  }

  void schedule_kill_check(std::uint64_t id) {
    if (a_.opts.interrupt.kill_after.count() > 0)
      later(a_.opts.interrupt.kill_after, kill_check_atom::value, id);
  }

  /// A call, cast or send from Python. Functions run right here (on this actor's worker);
  /// exposed actors get a message. Every message ends with host_done() (flow control).
  void on_host(host_message& h) {
    auto ch = a_.ch;
    auto respond_error = [&](std::string_view code, std::string message) {
      if (h.kind == host_message::call)
        ch->respond(protocol::encode_error_response(h.rid, "host_call", code, "HostError", message));
      else
        log_runtime(message);
    };
    if (h.kind == host_message::send) {
      caf::actor target;
      if (h.target) {
        if (auto t = h.target->to<host_handle>())
          target = a_.hosts->by_handle(t->bytes);
      } else {
        target = a_.hosts->actor(h.name);
      }
      if (target)
        caf::anon_send(target, python_message_atom::value, h.args.empty() ? value{} : h.args[0]);
      else
        log_runtime("pyvisor.send: no actor exposed as '" + h.name + "' (message dropped)");
      ch->host_done();
      return;
    }
    std::optional<host_function> fn;
    for (auto& [name, f] : a_.opts.functions)
      if (name == h.name)
        fn = f;
    if (!fn)
      fn = a_.hosts->function(h.name);
    if (fn) {
      try {
        auto label = ch->label();
        auto r = (*fn)(host_call{h.name, h.args, label, ch->pid()});
        if (h.kind == host_message::call) {
          if (r)
            ch->respond(protocol::encode_ok_response(h.rid, "host_call", *r));
          else
            respond_error("host_error", "host function '" + h.name + "' failed: " + r.error().to_string());
        } else if (!r) {
          log_runtime("host function '" + h.name + "' failed in a cast: " + r.error().to_string());
        }
      } catch (const std::exception& e) {
        respond_error("host_error", "host function '" + h.name + "' threw: " + e.what());
      }
      ch->host_done();
      return;
    }
    if (auto target = a_.hosts->actor(h.name)) {
      if (h.kind == host_message::cast) {
        caf::anon_send(target, host_cast_atom::value, h.name, std::move(h.args));
        ch->host_done();
        return;
      }
      auto rid = h.rid;
      auto name = h.name;
      this->request(target, caf::infinite, host_call_atom::value, name, std::move(h.args))
        .then(
          [ch, rid](const arg& r) {
            ch->respond(protocol::encode_ok_response(rid, "host_call", r));
            ch->host_done();
          },
          [ch, rid, name, this](const caf::error& e) {
            ch->respond(protocol::encode_error_response(
              rid, "host_call", "host_error", "HostError",
              "host actor '" + name + "' failed: " + system().render(e)));
            ch->host_done();
          });
      return;
    }
    respond_error("not_exposed", "'" + h.name + "' is not exposed by the host");
    ch->host_done();
  }

  void log_runtime(const std::string& line) {
    if (a_.log)
      a_.log(log_record{a_.opts.label, a_.ch->pid(), log_source::runtime, line, 0});
  }

  void on_exit(exit_info& info) {
    a_.st->set(interpreter_state::stopped, info.reason);
    auto cerr = to_caf_error(info.reason);
    for (auto& w : waiters_)
      w.deliver(cerr);
    waiters_.clear();
    for (auto& [id, c] : calls_)
      c.rp.deliver(cerr);
    calls_.clear();
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
  std::optional<error> kill_reason_;  // a kill waiting for the stack dump
  std::string dump_;
  std::unordered_map<std::uint64_t, pending_call> calls_;
  std::vector<caf::response_promise> waiters_;
  std::vector<caf::response_promise> stoppers_;
};

} // namespace

caf::actor spawn_interpreter_actor(caf::actor_system& sys, actor_args args) {
  return sys.spawn<interpreter_actor>(std::move(args));
}

} // namespace pyvisor::interp
