#pragma once

#include <caf/atom.hpp>

namespace pyvisor::interp {

/// (abandoned_atom, std::uint64_t id): a caller gave up on request `id` (timeout); the actor
/// runs the interrupt escalation for it (interrupt_policy). Sent by the blocking facade.
using abandoned_atom = caf::atom_constant<caf::atom("i_abandon")>;

} // namespace pyvisor::interp
