// The interpreter actor: its behavior, and a process's start: spawn, init script, ready (the
// class: interpreter_actor_impl.hpp).

#include "interpreter/interpreter_actor_impl.hpp"

namespace pyvisor::interp {

caf::behavior interpreter_actor::make_behavior() {
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

std::string interpreter_actor::label() const {
  std::lock_guard<std::mutex> g{a_.st->mu};
  return a_.st->label.empty() ? a_.opts.label : a_.st->label;
}

void interpreter_actor::start() {
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
  cfg.shm_keep = a_.opts.shared_memory_keep;
  // An isolated process (a tenant) is not trusted to leave a result alone once the host has
  // it: results are copied out of its shared memory.
  cfg.shm_copy = !(a_.opts.isolation == isolation{});
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
  // On the I/O thread: attach the process, or report why there is none.
  auto started = [s = session_, self = address(), inc = inc_](expected<process::spawned_process> p) {
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
  };
  if (a_.fork) {
    // Forked by the fork server's thread; back to the I/O thread to attach. A process that is
    // never attached (the loop stopped) has its fds closed, and so ends on EOF.
    a_.fork->spawn(a_.fork_args, process::exit_context_of(a_.spawn), a_.spawn.shm_bytes,
                   [loop = a_.loop, started = std::move(started)](expected<process::spawned_process> p) {
                     auto owned = std::make_shared<process::owned_process>(std::move(p));
                     loop->post([owned, started] { started(owned->take()); });
                   });
    return;
  }
  a_.loop->post([req = a_.spawn, started = std::move(started)] { started(process::spawn(req)); });
}

void interpreter_actor::on_ready(const ready_info& info) {
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

void interpreter_actor::on_init_done(call_result& r) {
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

void interpreter_actor::became_ready() {
  ever_ready_ = true;
  {
    std::lock_guard<std::mutex> g{a_.st->mu};
    a_.st->ready_since = std::chrono::steady_clock::now();
  }
  // Admission first: a caller that sees "ready" (spawn() returning, say) writes its
  // requests straight to the runner instead of finding them queued for a moment.
  a_.table->open();
  a_.st->set(interpreter_state::ready);
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

void interpreter_actor::abort_start(error e) {
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

void interpreter_actor::log_runtime(const std::string& line) {
  if (a_.log)
    a_.log(log_record{label(), a_.st->pid, log_source::runtime, line, 0});
}

caf::actor spawn_interpreter_actor(caf::actor_system& sys, actor_args args) {
  return sys.spawn<interpreter_actor>(std::move(args));
}

} // namespace pyvisor::interp
