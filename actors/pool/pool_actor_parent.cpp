// The pool actor as a child of a supervisor (core/child_protocol.hpp): one incarnation =
// the workers between child_start and the pool's child_down.

#include "pool/pool_actor_impl.hpp"

namespace pyvisor::pooling {

void pool_actor::begin_incarnation() {
  if (stopping_ || phase_ != phase::idle)
    return;
  phase_ = phase::running;
  up_sent_ = false;
  breaker_ = start_breaker{cfg_.opts.breaker};
  ++probe_gen_;  // probes of an earlier incarnation are stale
  cfg_.disp->set_unavailable(std::nullopt);
  start_workers(std::max<std::size_t>(scaler_.min_workers(), 1));
  report_up_when_ready();
}

void pool_actor::report_up_when_ready() {
  if (!cfg_.parent || up_sent_ || phase_ != phase::running)
    return;
  std::size_t ready = 0;
  for (auto& [n, s] : slots_)
    ready += s.state == worker_stats::ready ? 1 : 0;
  if (ready < cfg_.opts.min_ready.value_or(cfg_.opts.workers))
    return;
  up_sent_ = true;
  if (auto p = caf::actor_cast<caf::actor>(cfg_.parent))
    send(p, core::child_up_atom::value, address(), 0);
}

void pool_actor::end_incarnation(exit_kind kind, error reason) {
  if (phase_ != phase::running || stopping_)
    return;
  phase_ = phase::pausing;
  pending_down_ = exit_report{kind, -1, 0, std::move(reason)};
  for (auto& [n, s] : slots_)
    retire(s);
  maybe_paused();
}

void pool_actor::maybe_paused() {
  if (phase_ != phase::pausing || !slots_.empty())
    return;
  phase_ = phase::idle;
  if (auto p = caf::actor_cast<caf::actor>(cfg_.parent))
    send(p, core::child_down_atom::value, address(), pending_down_);
  publish();
}

} // namespace pyvisor::pooling
