#pragma once

#include <caf/atom.hpp>

namespace pyvisor::interp {

/// (abandoned_atom, std::uint64_t id): request `id` timed out after it was sent (the request
/// table reports it); the actor runs the interrupt escalation for it (interrupt_policy).
using abandoned_atom = caf::atom_constant<caf::atom("i_abandon")>;

} // namespace pyvisor::interp
