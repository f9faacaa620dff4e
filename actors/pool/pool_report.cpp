#include "pool/pool_report.hpp"

namespace pyvisor::pooling {

pool_stats report_stats(const pool_totals& t, const std::map<std::uint32_t, slot>& slots,
                        const dispatcher& disp, caf::actor_clock::time_point now) {
  auto snap = disp.stats();
  pool_stats p;
  p.name = t.name;
  p.workers = slots.size();
  p.ready = snap.accepting;
  p.in_flight = snap.in_flight;
  p.queued = snap.queued;
  p.served = snap.served;
  p.restarts = t.restarts;
  p.recycled = t.recycled;
  p.breaker_open = t.breaker_open;
  p.last_start_error = t.last_start_error;
  p.errors = snap.errors;
  p.latency = disp.latency();
  for (auto& [n, s] : slots) {
    worker_stats w;
    w.state = s.state;
    w.id = s.w->id;
    w.pid = s.state == worker_stats::restarting ? 0 : s.w->pid();
    w.restarts = s.restarts;
    w.last_exit = s.last_exit;
    for (auto& [k, v] : snap.in_flight_by_worker)
      if (k == n)
        w.in_flight = v;
    w.served = s.w->served.load(std::memory_order_relaxed);
    w.errors = s.w->errors.load(std::memory_order_relaxed);
    for (std::size_t c = 0; c < s.w->errors_by_code.size(); ++c)
      if (auto k = s.w->errors_by_code[c].load(std::memory_order_relaxed))
        w.errors_by_code.emplace_back(static_cast<errc>(c), k);
    if (s.w->table) {
      const auto ts = s.w->table->stats();
      w.queued = ts.admission_queue;
      w.busy_transitions = ts.busy_transitions;
      w.replies_read_by_caller = ts.replies_read_by_caller;
    }
    w.rss_bytes = s.w->rss_bytes.load(std::memory_order_relaxed);
    if (w.rss_bytes == 0 && w.pid != 0)
      w.rss_bytes = read_rss_bytes(w.pid);
    if (running(s))
      w.uptime = std::chrono::duration_cast<std::chrono::milliseconds>(now - s.up_since);
    w.latency = s.w->latency.summary();
    p.per_worker.push_back(std::move(w));
  }
  return p;
}

} // namespace pyvisor::pooling
