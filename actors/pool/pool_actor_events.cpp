// The pool actor: interrupt, stats, events and the status it publishes.

#include "pool/pool_actor_impl.hpp"

namespace pyvisor::pooling {

caf::result<std::size_t> pool_actor::interrupt() {
  auto rp = make_response_promise<std::size_t>();
  auto total = std::make_shared<std::size_t>(cfg_.disp->cancel_queued());
  auto left = std::make_shared<std::size_t>(0);
  std::vector<caf::actor> targets;
  for (auto& [n, s] : slots_)
    if (!s.exit_sent)
      targets.push_back(s.w->actor);
  if (targets.empty()) {
    rp.deliver(*total);
    return rp;
  }
  *left = targets.size();
  for (auto& a : targets)
    request(a, caf::infinite, interrupt_atom::value)
      .then(
        [=](std::size_t k) mutable {
          *total += k;
          if (--*left == 0)
            rp.deliver(*total);
        },
        [=](caf::error&) mutable {
          if (--*left == 0)
            rp.deliver(*total);
        });
  return rp;
}

pool_stats pool_actor::stats() {
  pool_totals t{cfg_.opts.name, restarts_, recycled_,
                breaker_.current() != start_breaker::state::closed, breaker_.last_error()};
  return report_stats(t, slots_, *cfg_.disp, clock().now());
}

void pool_actor::emit(pool_event e) {
  if (cfg_.on_event)
    cfg_.on_event(e);
}

void pool_actor::publish() {
  if (!cfg_.on_status)
    return;
  pool_status st;
  for (auto& [n, s] : slots_)
    if (s.state == worker_stats::ready)
      ++st.ready;
  st.breaker_open = breaker_.current() != start_breaker::state::closed;
  st.last_start_error = breaker_.last_error();
  st.ended = ended_;
  cfg_.on_status(st);
}

} // namespace pyvisor::pooling
