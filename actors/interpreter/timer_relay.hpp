#pragma once

#include <caf/actor.hpp>
#include <caf/atom.hpp>

namespace caf {
class actor_system;
} // namespace caf

namespace pyvisor::interp {

/// (timer_relay_atom, caf::actor_addr to, caf::message m): delivers `m` to `to` if it is still
/// alive. Actors send their timers through the relay with a delay, so a pending timer holds
/// only a weak address: CAF 0.17's delayed messages hold their receiver strongly and cannot be
/// cancelled, which kept every stopped interpreter in memory until its timers fired.
using timer_relay_atom = caf::atom_constant<caf::atom("i_relay")>;

/// Spawns the relay (one per runtime; it lives until it is sent an exit).
caf::actor spawn_timer_relay(caf::actor_system& sys);

} // namespace pyvisor::interp
