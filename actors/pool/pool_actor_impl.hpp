#pragma once

// The pool actor's class, shared by the files that implement it (one concept each):
// pool_actor.cpp (behavior; workers: start, restart, circuit breaker), pool_actor_parent.cpp
// (as a child of a supervisor), pool_actor_leaving.cpp (recycling, scaling, stop, autoscaling
// ticks), pool_actor_events.cpp (interrupt, stats, events, status). Internal to actors/pool.

#include <algorithm>
#include <map>
#include <random>

#include <caf/all.hpp>

#include "core/child_protocol.hpp"
#include "pool/autoscaler.hpp"
#include "pool/pool_actor.hpp"
#include "pool/pool_requests.hpp"
#include "pool/pool_report.hpp"
#include "pool/start_breaker.hpp"
#include "pool/worker_slot.hpp"
#include "pyvisor/actor_interface.hpp"
#include "pyvisor/pool.hpp"
#include "supervision/restart_policy.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::pool_stats)

namespace pyvisor::pooling {

// Messages the pool actor sends itself (timers) or gets from its dispatcher.
using restart_atom = caf::atom_constant<caf::atom("p_restart")>;
using probe_atom = caf::atom_constant<caf::atom("p_probe")>;
using tick_atom = caf::atom_constant<caf::atom("p_tick")>;
using recycle_atom = caf::atom_constant<caf::atom("p_recycle")>;
using drained_atom = caf::atom_constant<caf::atom("p_drained")>;
using add_atom = caf::atom_constant<caf::atom("p_add")>;

class pool_actor : public caf::event_based_actor {
public:
  pool_actor(caf::actor_config& c, pool_config cfg)
    : caf::event_based_actor(c), cfg_(std::move(cfg)), breaker_(cfg_.opts.breaker),
      scaler_(cfg_.opts.autoscale, min_of(cfg_.opts), max_of(cfg_.opts)), rng_(cfg_.seed),
      requests_(*this, cfg_.disp, cfg_.opts.worker.default_timeout),
      phase_(cfg_.parent ? phase::idle : phase::running) {}

  static std::size_t min_of(const pool_options& o) {
    return o.autoscale.min_workers == 0 ? o.workers : o.autoscale.min_workers;
  }
  static std::size_t max_of(const pool_options& o) {
    return std::max(min_of(o), o.autoscale.max_workers == 0 ? o.workers : o.autoscale.max_workers);
  }

  caf::behavior make_behavior() override;

private:
  // ---- workers: start, restart, circuit breaker (pool_actor.cpp) --------------------------

  /// Whether workers are kept running: not stopping, and (under a parent) between child_start
  /// and child_stop.
  bool live() const { return !stopping_ && phase_ == phase::running; }

  void start_workers(std::size_t n);

  /// Makes a worker and starts it; `ring_slot` 0 gives it a place of its own on the ring.
  std::uint32_t add_worker(std::uint32_t ring_slot);

  void arm_recycle_after(worker& w);

  slot* by_addr(const caf::actor_addr& a);

  slot* by_number(std::uint32_t n);

  void on_up(const caf::actor_addr& a, int pid);

  void on_down(const caf::actor_addr& a, exit_report& r);

  void on_restart_due(std::uint32_t n, std::uint64_t gen);

  void start_again(slot& s);

  void start_failed(const error& e);

  error unavailable_error(const error& cause) const;

  void on_probe();

  // ---- under a supervisor (core/child_protocol.hpp) -----------------------------------------
  // One incarnation = the workers between child_start and the pool's child_down. The actor,
  // its dispatcher and its queue outlive incarnations: requests wait in the queue meanwhile.

  void begin_incarnation();

  /// child_up once `min_ready` workers are ready (spawn_pool's condition).
  void report_up_when_ready();

  /// Stops every worker; child_down(`kind`) once they are all gone.
  void end_incarnation(exit_kind kind, error reason);

  void maybe_paused();

  // ---- leaving: recycling, scaling down, stop -----------------------------------------------

  void recycle(std::uint32_t n, std::string reason);

  /// Marks `s` leaving and lets it finish what it runs; it stops once nothing is in flight.
  void retire_when_drained(slot& s);

  void on_drained(std::uint32_t n);

  /// Stops the worker for good; it leaves the map when its actor is down.
  void retire(slot& s);

  void on_worker_down(const caf::actor_addr& a);

  std::size_t staying() const;

  void scale_to(std::size_t n);

  /// The worker to remove: one that is not running first, else the least busy.
  slot* pick_victim();

  void begin_stop();

  void maybe_finish();

  // ---- autoscaling and idle recycling ---------------------------------------------------------

  void schedule_tick();

  void on_tick();

  // ---- interrupt, stats, events ---------------------------------------------------------------

  caf::result<std::size_t> interrupt();

  pool_stats stats();

  pool_event event(pool_event::kind_t k, std::string worker, int pid, std::string reason,
                   std::optional<exit_report> r = std::nullopt) const {
    pool_event e;
    e.kind = k;
    e.pool = cfg_.opts.name;
    e.worker = std::move(worker);
    e.pid = pid;
    e.reason = std::move(reason);
    e.report = std::move(r);
    return e;
  }

  void emit(pool_event e);

  void publish();

  pool_config cfg_;
  start_breaker breaker_;
  autoscaler scaler_;
  std::minstd_rand rng_;
  pool_requests requests_;
  std::map<std::uint32_t, slot> slots_;
  std::uint32_t next_number_ = 0;
  std::uint64_t restarts_ = 0;
  std::uint64_t recycled_ = 0;
  std::uint64_t probe_gen_ = 0;  // the breaker's latest opening (older probe timers are stale)
  bool tick_armed_ = false;
  bool stopping_ = false;
  bool ended_ = false;
  enum class phase : std::uint8_t { running, pausing, idle } phase_;
  bool up_sent_ = false;      // child_up sent for this incarnation
  exit_report pending_down_;  // what child_down reports once the workers are gone
  std::vector<caf::typed_response_promise<bool>> stop_waiters_;
};

} // namespace pyvisor::pooling
