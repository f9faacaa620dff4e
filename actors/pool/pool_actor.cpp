#include "pool/pool_actor.hpp"

#include <algorithm>
#include <map>
#include <random>

#include <caf/all.hpp>

#include "core/child_protocol.hpp"
#include "pool/autoscaler.hpp"
#include "pool/pool_requests.hpp"
#include "pool/pool_report.hpp"
#include "pool/start_breaker.hpp"
#include "pyvisor/actor_interface.hpp"
#include "pyvisor/pool.hpp"
#include "supervision/restart_policy.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::pool_stats)

namespace pyvisor::pooling {

namespace {

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

  caf::behavior make_behavior() override {
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

private:
  // ---- workers ------------------------------------------------------------------------------

  /// Whether workers are kept running: not stopping, and (under a parent) between child_start
  /// and child_stop.
  bool live() const { return !stopping_ && phase_ == phase::running; }

  void start_workers(std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      add_worker(0);
    publish();
    schedule_tick();
  }

  // ---- under a supervisor (core/child_protocol.hpp) -----------------------------------------
  // One incarnation = the workers between child_start and the pool's child_down. The actor,
  // its dispatcher and its queue outlive incarnations: requests wait in the queue meanwhile.

  void begin_incarnation() {
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

  /// child_up once `min_ready` workers are ready (spawn_pool's condition).
  void report_up_when_ready() {
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

  /// Stops every worker; child_down(`kind`) once they are all gone.
  void end_incarnation(exit_kind kind, error reason) {
    if (phase_ != phase::running || stopping_)
      return;
    phase_ = phase::pausing;
    pending_down_ = exit_report{kind, -1, 0, std::move(reason)};
    for (auto& [n, s] : slots_)
      retire(s);
    maybe_paused();
  }

  void maybe_paused() {
    if (phase_ != phase::pausing || !slots_.empty())
      return;
    phase_ = phase::idle;
    if (auto p = caf::actor_cast<caf::actor>(cfg_.parent))
      send(p, core::child_down_atom::value, address(), pending_down_);
    publish();
  }

  /// Makes a worker and starts it; `ring_slot` 0 gives it a place of its own on the ring.
  std::uint32_t add_worker(std::uint32_t ring_slot) {
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

  void arm_recycle_after(worker& w) {
    auto& r = cfg_.opts.recycle;
    if (r.max_requests == 0)
      return;
    std::uint64_t jitter = 0;
    if (r.max_requests_jitter > 0)
      jitter = std::uniform_int_distribution<std::uint64_t>{0, r.max_requests_jitter}(rng_);
    w.recycle_after.store(r.max_requests + jitter, std::memory_order_relaxed);
  }

  slot* by_addr(const caf::actor_addr& a) {
    for (auto& [n, s] : slots_)
      if (s.w->actor.address() == a)
        return &s;
    return nullptr;
  }

  slot* by_number(std::uint32_t n) {
    auto i = slots_.find(n);
    return i == slots_.end() ? nullptr : &i->second;
  }

  void on_up(const caf::actor_addr& a, int pid) {
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

  void on_down(const caf::actor_addr& a, exit_report& r) {
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

  void on_restart_due(std::uint32_t n, std::uint64_t gen) {
    auto* s = by_number(n);
    if (s == nullptr || s->gen != gen || !live() || s->leaving || s->waits_breaker)
      return;
    if (breaker_.current() != start_breaker::state::closed) {
      s->waits_breaker = true;
      return;
    }
    start_again(*s);
  }

  void start_again(slot& s) {
    ++s.restarts;
    ++restarts_;
    s.state = worker_stats::starting;
    send(s.w->actor, core::child_start_atom::value);
  }

  void start_failed(const error& e) {
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

  error unavailable_error(const error& cause) const {
    auto e = make_error(errc::pool_unavailable,
                        "pool '" + cfg_.opts.name + "': its workers fail to start (circuit breaker " +
                          "open); last start error: " + cause.to_string());
    e.python_type = cause.python_type;
    e.traceback = cause.traceback;
    return e;
  }

  void on_probe() {
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

  // ---- leaving: recycling, scaling down, stop -----------------------------------------------

  void recycle(std::uint32_t n, std::string reason) {
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

  /// Marks `s` leaving and lets it finish what it runs; it stops once nothing is in flight.
  void retire_when_drained(slot& s) {
    s.leaving = true;
    if (!running(s)) {  // between processes, or starting: nothing runs
      retire(s);
      return;
    }
    s.state = worker_stats::draining;
    cfg_.disp->set_accepting(s.w->number, false);
    cfg_.disp->watch_drain(s.w->number);
  }

  void on_drained(std::uint32_t n) {
    auto* s = by_number(n);
    if (s != nullptr && s->leaving)
      retire(*s);
  }

  /// Stops the worker for good; it leaves the map when its actor is down.
  void retire(slot& s) {
    s.leaving = true;
    cfg_.disp->remove(s.w->number);
    if (s.exit_sent)
      return;
    s.exit_sent = true;
    if (s.state != worker_stats::restarting)
      s.state = worker_stats::draining;
    send_exit(s.w->actor, caf::exit_reason::user_shutdown);
  }

  void on_worker_down(const caf::actor_addr& a) {
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

  std::size_t staying() const {
    return static_cast<std::size_t>(
      std::count_if(slots_.begin(), slots_.end(), [](auto& p) { return !p.second.leaving; }));
  }

  void scale_to(std::size_t n) {
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

  /// The worker to remove: one that is not running first, else the least busy.
  slot* pick_victim() {
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

  void begin_stop() {
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

  void maybe_finish() {
    if (!stopping_ || !slots_.empty())
      return;
    for (auto& rp : stop_waiters_)
      rp.deliver(true);
    stop_waiters_.clear();
    ended_ = true;
    publish();
    quit();
  }

  // ---- autoscaling and idle recycling ---------------------------------------------------------

  void schedule_tick() {
    if (tick_armed_ || !live())
      return;
    if (scaler_.enabled() || cfg_.opts.recycle.max_idle != forever) {
      tick_armed_ = true;
      delayed_send(this, cfg_.opts.autoscale.check_interval, tick_atom::value);
    }
  }

  void on_tick() {
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

  // ---- interrupt, stats, events ---------------------------------------------------------------

  caf::result<std::size_t> interrupt() {
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

  pool_stats stats() {
    pool_totals t{cfg_.opts.name, restarts_, recycled_,
                  breaker_.current() != start_breaker::state::closed, breaker_.last_error()};
    return report_stats(t, slots_, *cfg_.disp, clock().now());
  }

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

  void emit(pool_event e) {
    if (cfg_.on_event)
      cfg_.on_event(e);
  }

  void publish() {
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

} // namespace

caf::actor spawn_pool_actor(caf::actor_system& sys, pool_config cfg) {
  return sys.spawn<pool_actor>(std::move(cfg));
}

} // namespace pyvisor::pooling
