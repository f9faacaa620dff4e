// The pool actor: its behavior, and its workers: start, restart with backoff, the start
// circuit breaker (the class: pool_actor_impl.hpp).

#include "pool/pool_actor_impl.hpp"

namespace pyvisor::pooling {

caf::behavior pool_actor::make_behavior() {
  set_down_handler([this](caf::down_msg& m) { on_worker_down(m.source); });
  set_exit_handler([this](caf::exit_msg&) { begin_stop(); });
  auto self = address();
  cfg_.disp->listen(dispatcher::listener{
    [self](std::uint32_t n, std::string reason) {
      if (auto a = caf::actor_cast<caf::actor>(self))
        caf::anon_send(a, recycle_atom::value, n, std::move(reason));
    },
    [self](std::uint32_t n) {
      if (auto a = caf::actor_cast<caf::actor>(self))
        caf::anon_send(a, drained_atom::value, n);
    }});
  if (phase_ == phase::running)
    start_workers(cfg_.opts.workers);
  auto handlers = caf::message_handler{
    [this](core::child_start_atom) { begin_incarnation(); },
    [this](core::child_stop_atom, const shutdown_policy&) {
      end_incarnation(exit_kind::shutdown,
                      make_error(errc::interpreter_down,
                                 "pool '" + cfg_.opts.name + "' was stopped by its supervisor"));
    },
    [this](core::child_up_atom, const caf::actor_addr& a, int pid) { on_up(a, pid); },
    [this](core::child_down_atom, const caf::actor_addr& a, exit_report& r) { on_down(a, r); },
    [this](restart_atom, std::uint32_t n, std::uint64_t gen) { on_restart_due(n, gen); },
    [this](probe_atom, std::uint64_t gen) {
      if (gen == probe_gen_)
        on_probe();
    },
    [this](tick_atom) { on_tick(); },
    [this](recycle_atom, std::uint32_t n, std::string& reason) { recycle(n, std::move(reason)); },
    [this](drained_atom, std::uint32_t n) { on_drained(n); },
    [this](add_atom, std::uint32_t ring_slot) {
      if (live() && staying() < scaler_.min_workers())
        add_worker(ring_slot);
    },
    [this](pool_resize_atom, std::size_t n) -> caf::result<bool> {
      if (stopping_)
        return to_caf_error(make_error(errc::interpreter_down, "the pool is stopping"));
      if (n == 0)
        return to_caf_error(make_error(errc::invalid_argument, "a pool needs at least one worker"));
      scaler_.set_bounds(n, std::max(n, scaler_.max_workers()));
      emit(event(pool_event::resized, "", 0, "resize(" + std::to_string(n) + ")"));
      if (live())  // otherwise the next incarnation starts with the new size
        scale_to(n);
      schedule_tick();  // the new bounds may allow autoscaling
      return true;
    },
    [this](pool_stats_atom) { return stats(); },
    [this](interrupt_atom) -> caf::result<std::size_t> { return interrupt(); },
    [this](stop_atom) -> caf::result<bool> {
      auto rp = make_response_promise<bool>();
      stop_waiters_.push_back(rp);
      begin_stop();
      return rp;
    },
  };
  return caf::behavior{handlers.or_else(requests_.handlers())};
}

void pool_actor::start_workers(std::size_t n) {
  for (std::size_t i = 0; i < n; ++i)
    add_worker(0);
  publish();
  schedule_tick();
}

std::uint32_t pool_actor::add_worker(std::uint32_t ring_slot) {
  auto n = ++next_number_;
  auto w = cfg_.make(n, ring_slot == 0 ? n : ring_slot, this);
  if (!w) {
    // The factory refused (shutting down, bad options): count it as a failed start.
    exit_report r;
    r.kind = exit_kind::start_failed;
    r.reason = w.error();
    emit(event(pool_event::worker_exited, "w" + std::to_string(n), 0, "could not be made", r));
    start_failed(r.reason);
    // Try again after the backoff base while the breaker is closed (a probe otherwise).
    if (live() && breaker_.current() == start_breaker::state::closed)
      delayed_send(this, std::max(cfg_.opts.backoff.base, std::chrono::milliseconds{1}),
                   add_atom::value, ring_slot);
    publish();
    return 0;
  }
  auto& s = slots_.emplace(n, slot{cfg_.opts.backoff}).first->second;
  s.w = *w;
  s.w->last_active_ns.store(steady_ns(), std::memory_order_relaxed);
  arm_recycle_after(*s.w);
  monitor(s.w->actor);
  cfg_.disp->add(s.w);
  send(s.w->actor, core::child_start_atom::value);
  return n;
}

void pool_actor::arm_recycle_after(worker& w) {
  auto& r = cfg_.opts.recycle;
  if (r.max_requests == 0)
    return;
  std::uint64_t jitter = 0;
  if (r.max_requests_jitter > 0)
    jitter = std::uniform_int_distribution<std::uint64_t>{0, r.max_requests_jitter}(rng_);
  w.recycle_after.store(r.max_requests + jitter, std::memory_order_relaxed);
}

slot* pool_actor::by_addr(const caf::actor_addr& a) {
  for (auto& [n, s] : slots_)
    if (s.w->actor.address() == a)
      return &s;
  return nullptr;
}

slot* pool_actor::by_number(std::uint32_t n) {
  auto i = slots_.find(n);
  return i == slots_.end() ? nullptr : &i->second;
}

void pool_actor::on_up(const caf::actor_addr& a, int pid) {
  auto* s = by_addr(a);
  if (s == nullptr)
    return;
  s->state = worker_stats::ready;
  s->pid = pid;
  s->last_pid = pid;
  s->up_since = clock().now();
  s->w->last_active_ns.store(steady_ns(), std::memory_order_relaxed);
  emit(event(pool_event::worker_started, s->w->id, pid, s->restarts ? "restart " + std::to_string(s->restarts) : ""));
  if (breaker_.started()) {
    cfg_.disp->set_unavailable(std::nullopt);
    emit(event(pool_event::breaker_closed, "", 0, "worker '" + s->w->id + "' came up"));
    for (auto& [n, o] : slots_)
      if (o.waits_breaker) {
        o.waits_breaker = false;
        start_again(o);
      }
    // Workers that could not even be made (refused) are made now.
    while (live() && staying() < scaler_.min_workers())
      if (add_worker(0) == 0)
        break;
  }
  if (s->leaving) {  // scaled away while it started
    retire_when_drained(*s);
  } else {
    cfg_.disp->set_accepting(s->w->number, true);
    // A recycling replacement is ready: the worker it replaces leaves once drained.
    for (auto& [n, o] : slots_)
      if (o.replacement == s->w->number && o.leaving)
        retire_when_drained(o);
  }
  publish();
  report_up_when_ready();
}

void pool_actor::on_down(const caf::actor_addr& a, exit_report& r) {
  auto* s = by_addr(a);
  if (s == nullptr)
    return;
  cfg_.disp->set_accepting(s->w->number, false);
  auto up = running(*s)
              ? std::chrono::duration_cast<std::chrono::milliseconds>(clock().now() - s->up_since)
              : std::chrono::milliseconds{0};
  s->last_exit = r;
  emit(event(pool_event::worker_exited, s->w->id, s->pid, "", r));
  s->pid = 0;
  if (!live() || s->leaving) {
    retire(*s);
    publish();
    return;
  }
  s->state = worker_stats::restarting;
  if (r.kind == exit_kind::start_failed) {
    start_failed(r.reason);
    if (breaker_.current() != start_breaker::state::closed) {
      s->waits_breaker = true;
      publish();
      return;
    }
  }
  s->backoff.ended_after(up);
  auto delay = s->backoff.next(std::uniform_real_distribution<double>{0.0, 1.0}(rng_));
  auto e = event(pool_event::worker_restarting, s->w->id, 0, "");
  e.delay = delay;
  emit(std::move(e));
  auto gen = ++s->gen;
  if (delay.count() == 0)
    send(this, restart_atom::value, s->w->number, gen);
  else
    delayed_send(this, delay, restart_atom::value, s->w->number, gen);
  publish();
}

void pool_actor::on_restart_due(std::uint32_t n, std::uint64_t gen) {
  auto* s = by_number(n);
  if (s == nullptr || s->gen != gen || !live() || s->leaving || s->waits_breaker)
    return;
  if (breaker_.current() != start_breaker::state::closed) {
    s->waits_breaker = true;
    return;
  }
  start_again(*s);
}

void pool_actor::start_again(slot& s) {
  ++s.restarts;
  ++restarts_;
  s.state = worker_stats::starting;
  send(s.w->actor, core::child_start_atom::value);
}

void pool_actor::start_failed(const error& e) {
  if (auto delay = breaker_.start_failed(e)) {
    auto err = unavailable_error(e);
    cfg_.disp->set_unavailable(err);
    exit_report r;
    r.kind = exit_kind::start_failed;
    r.reason = e;
    auto ev = event(pool_event::breaker_opened, "", 0,
                    std::to_string(breaker_.failures()) + " failed starts in a row", r);
    ev.delay = *delay;
    emit(std::move(ev));
    delayed_send(this, *delay, probe_atom::value, ++probe_gen_);
    // Under a supervisor, a pool that cannot come up ends its start like a child that
    // failed it: the supervisor's restart policy decides.
    if (cfg_.parent && !up_sent_)
      end_incarnation(exit_kind::start_failed, e);
  }
}

error pool_actor::unavailable_error(const error& cause) const {
  auto e = make_error(errc::pool_unavailable,
                      "pool '" + cfg_.opts.name + "': its workers fail to start (circuit breaker " +
                        "open); last start error: " + cause.to_string());
  e.python_type = cause.python_type;
  e.traceback = cause.traceback;
  return e;
}

void pool_actor::on_probe() {
  if (!live() || breaker_.current() != start_breaker::state::open)
    return;
  breaker_.probe();
  // The probe: one worker that waits for the breaker, or a new one if none does.
  for (auto& [n, s] : slots_)
    if (s.waits_breaker) {
      s.waits_breaker = false;
      emit(event(pool_event::breaker_half_open, s.w->id, 0, "probe start"));
      start_again(s);
      return;
    }
  emit(event(pool_event::breaker_half_open, "", 0, "probe start of a new worker"));
  add_worker(0);
}

caf::actor spawn_pool_actor(caf::actor_system& sys, pool_config cfg) {
  return sys.spawn<pool_actor>(std::move(cfg));
}

} // namespace pyvisor::pooling
