// The pool actor: workers leaving (recycling, scaling down, stop) and the autoscaling and
// idle-recycling tick.

#include "pool/pool_actor_impl.hpp"

namespace pyvisor::pooling {

void pool_actor::recycle(std::uint32_t n, std::string reason) {
  auto* s = by_number(n);
  if (s == nullptr || s->leaving || !live())
    return;
  s->w->recycle_flagged.store(true, std::memory_order_relaxed);
  cfg_.disp->set_accepting(n, false);
  s->leaving = true;
  ++recycled_;
  emit(event(pool_event::worker_recycling, s->w->id, s->pid, reason));
  auto ring = s->w->ring_slot;
  auto fresh = add_worker(ring);
  s = by_number(n);  // add_worker may have rehashed the map
  if (s == nullptr)
    return;
  s->replacement = fresh;
  if (fresh == 0 || !running(*s))
    retire_when_drained(*s);  // nothing to wait for (no replacement, or not running anyway)
  else
    s->state = worker_stats::draining;  // finishes its requests until the fresh one is ready
  publish();
}

void pool_actor::retire_when_drained(slot& s) {
  s.leaving = true;
  if (!running(s)) {  // between processes, or starting: nothing runs
    retire(s);
    return;
  }
  s.state = worker_stats::draining;
  cfg_.disp->set_accepting(s.w->number, false);
  cfg_.disp->watch_drain(s.w->number);
}

void pool_actor::on_drained(std::uint32_t n) {
  auto* s = by_number(n);
  if (s != nullptr && s->leaving)
    retire(*s);
}

void pool_actor::retire(slot& s) {
  s.leaving = true;
  cfg_.disp->remove(s.w->number);
  if (s.exit_sent)
    return;
  s.exit_sent = true;
  if (s.state != worker_stats::restarting)
    s.state = worker_stats::draining;
  send_exit(s.w->actor, caf::exit_reason::user_shutdown);
}

void pool_actor::on_worker_down(const caf::actor_addr& a) {
  auto* s = by_addr(a);
  if (s == nullptr)
    return;
  auto n = s->w->number;
  auto ring = s->w->ring_slot;
  bool expected_end = s->leaving || stopping_;
  auto reason = s->last_exit ? std::string{to_string(s->last_exit->kind)} : std::string{};
  cfg_.disp->remove(n);
  emit(event(pool_event::worker_retired, s->w->id, s->last_pid,
             expected_end ? "left the pool" : "its actor ended"));
  slots_.erase(n);
  if (cfg_.on_worker_gone)
    cfg_.on_worker_gone(n);
  if (stopping_) {
    maybe_finish();
    return;
  }
  if (phase_ == phase::pausing) {
    maybe_paused();
    return;
  }
  if (!expected_end && live())
    add_worker(ring);  // an actor killed from outside: keep the pool's size
  publish();
}

std::size_t pool_actor::staying() const {
  return static_cast<std::size_t>(
    std::count_if(slots_.begin(), slots_.end(), [](auto& p) { return !p.second.leaving; }));
}

void pool_actor::scale_to(std::size_t n) {
  while (staying() < n)
    if (add_worker(0) == 0)
      break;
  while (staying() > n) {
    auto* victim = pick_victim();
    if (victim == nullptr)
      break;
    retire_when_drained(*victim);
  }
  publish();
}

slot* pool_actor::pick_victim() {
  auto snap = cfg_.disp->stats();
  auto load = [&](std::uint32_t n) {
    for (auto& [k, v] : snap.in_flight_by_worker)
      if (k == n)
        return v;
    return std::size_t{0};
  };
  slot* best = nullptr;
  std::size_t best_load = 0;
  for (auto& [n, s] : slots_) {
    if (s.leaving)
      continue;
    std::size_t l = s.state == worker_stats::ready ? load(n) + 1 : 0;
    if (best == nullptr || l < best_load || (l == best_load && n > best->w->number)) {
      best = &s;
      best_load = l;
    }
  }
  return best;
}

void pool_actor::begin_stop() {
  if (stopping_) {
    maybe_finish();
    return;
  }
  stopping_ = true;
  cfg_.disp->refuse(make_error(errc::interpreter_down, "pool '" + cfg_.opts.name + "' is stopping"));
  for (auto& [n, s] : slots_)
    retire(s);
  maybe_finish();
}

void pool_actor::maybe_finish() {
  if (!stopping_ || !slots_.empty())
    return;
  for (auto& rp : stop_waiters_)
    rp.deliver(true);
  stop_waiters_.clear();
  ended_ = true;
  publish();
  quit();
}

void pool_actor::schedule_tick() {
  if (tick_armed_ || !live())
    return;
  if (scaler_.enabled() || cfg_.opts.recycle.max_idle != forever) {
    tick_armed_ = true;
    delayed_send(this, cfg_.opts.autoscale.check_interval, tick_atom::value);
  }
}

void pool_actor::on_tick() {
  tick_armed_ = false;
  if (!live())
    return;
  auto snap = cfg_.disp->stats();
  autoscaler::load l{snap.queued, snap.in_flight, snap.accepting, staying()};
  if (scaler_.enabled()) {
    auto d = scaler_.check(clock().now(), l);
    if (d.delta > 0) {
      emit(event(pool_event::scaled_up, "", 0, d.reason));
      scale_to(l.workers + 1);
    } else if (d.delta < 0 && breaker_.current() == start_breaker::state::closed) {
      emit(event(pool_event::scaled_down, "", 0, d.reason));
      scale_to(l.workers - 1);
    }
  }
  if (cfg_.opts.recycle.max_idle != forever) {
    auto now = steady_ns();
    auto limit = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.opts.recycle.max_idle);
    std::vector<std::uint32_t> idle;
    for (auto& [n, s] : slots_)
      if (s.state == worker_stats::ready && !s.leaving &&
          now - s.w->last_active_ns.load(std::memory_order_relaxed) >= limit.count())
        idle.push_back(n);
    for (auto n : idle)
      recycle(n, "max_idle: nothing served for " +
                   std::to_string(cfg_.opts.recycle.max_idle.count()) + " ms");
  }
  schedule_tick();
}

} // namespace pyvisor::pooling
