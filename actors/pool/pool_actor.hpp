#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "pool/dispatcher.hpp"
#include "pool/worker.hpp"
#include "pyvisor/expected.hpp"
#include "pyvisor/pool_options.hpp"
#include "pyvisor/pool_stats.hpp"

namespace pyvisor::pooling {

/// Makes worker `number` (its interpreter actor supervised by `pool`, not started yet: the pool
/// sends child_start). `ring_slot` is its place on the hash ring.
using worker_factory = std::function<expected<std::shared_ptr<worker>>(
  std::uint32_t number, std::uint32_t ring_slot, const caf::actor& pool)>;

/// What the pool actor publishes for blocking callers (spawn_pool, wait_ready, stop).
struct pool_status {
  std::size_t ready = 0;
  bool breaker_open = false;
  std::optional<error> last_start_error;
  bool ended = false;
};

struct pool_config {
  pool_options opts;  ///< validated by the facade
  worker_factory make;
  std::shared_ptr<dispatcher> disp;
  /// Every lifecycle event (log sink, subscribers); on the actor's thread.
  std::function<void(const pool_event&)> on_event;
  /// The status changed; on the actor's thread.
  std::function<void(const pool_status&)> on_status;
  /// Worker `number` left the pool for good (the facade lets go of its handle).
  std::function<void(std::uint32_t number)> on_worker_gone;
  std::uint64_t seed = 0;  ///< jitter of backoff and max_requests (tests fix it)
  /// Set for a pool in a supervision tree: it starts its workers at child_start, reports
  /// child_up once `min_ready` are ready, stops them at child_stop (then child_down), and ends
  /// its start with child_down(start_failed) when the breaker opens before that. Unset: it
  /// starts at once.
  caf::actor_addr parent;
};

/// Spawns a pool actor: it supervises the workers (the child protocol of core/child_protocol.hpp:
/// restarts with backoff, never gives up; a circuit breaker on starts instead), recycles them,
/// autoscales, and answers the actor interface of pyvisor/pool.hpp through the dispatcher.
/// All timing goes through the actor clock.
caf::actor spawn_pool_actor(caf::actor_system& sys, pool_config cfg);

} // namespace pyvisor::pooling
