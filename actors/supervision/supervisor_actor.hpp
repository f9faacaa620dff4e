#pragma once

#include <cstdint>
#include <functional>

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>
#include <caf/actor_system.hpp>

#include "pyvisor/expected.hpp"
#include "pyvisor/supervision.hpp"

namespace pyvisor::supervision {

/// Makes the long-lived actor of a child (not started yet: the supervisor sends child_start).
/// Called once per child, and again only if that actor died on its own.
using child_factory =
  std::function<expected<caf::actor>(const child_spec& spec, const caf::actor& supervisor)>;

struct supervisor_config {
  supervisor_spec spec;
  child_factory make;
  /// Every lifecycle event (log sink, the facade's subscribers); called on the actor's thread.
  std::function<void(const supervision_event&)> on_event;
  /// Set for a nested supervisor: it waits for child_start and reports to this parent with the
  /// child protocol (core/child_protocol.hpp). Unset: it starts its children at once and quits
  /// when it gives up or is stopped.
  caf::actor_addr parent;  ///< weak: the parent holds its children, not the reverse
  /// Seed of the jitter (tests fix it).
  std::uint64_t seed = 0;
};

/// Spawns a supervisor (OTP semantics plus backoff; see pyvisor/supervision.hpp). All timing
/// goes through the actor clock, so it runs under CAF's test_coordinator with simulated time.
caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_config cfg);

} // namespace pyvisor::supervision
