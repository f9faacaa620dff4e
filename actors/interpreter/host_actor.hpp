#pragma once

#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>

#include "interpreter/host_registry.hpp"
#include "pyvisor/host_function.hpp"

namespace pyvisor::interp {

/// Spawns the actor that serves one interpreter's calls, casts and sends from Python
/// (host_message, see session.hpp): host functions run here, so a slow one delays only other
/// host calls of the same interpreter, never its stop sequence, deadlines or kill checks.
/// Calls to exposed actors are forwarded with a request (several may be outstanding); sends
/// go out with `interpreter` as their sender, so an actor that serves several interpreters can
/// tell them apart (and monitor or answer the sender). With `allowed` set, only those names of
/// the runtime's registry are reachable (`functions` always are); others are `not_exposed`.
caf::actor spawn_host_actor(caf::actor_system& sys, std::shared_ptr<host_registry> hosts,
                            std::vector<std::pair<std::string, host_function>> functions,
                            std::optional<std::vector<std::string>> allowed,
                            caf::actor_addr interpreter);

} // namespace pyvisor::interp
