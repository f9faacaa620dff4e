#include "interpreter/timer_relay.hpp"

#include <caf/all.hpp>

namespace pyvisor::interp {

caf::actor spawn_timer_relay(caf::actor_system& sys) {
  return sys.spawn([]() -> caf::behavior {
    return {
      [](timer_relay_atom, const caf::actor_addr& to, caf::message& m) {
        if (auto a = caf::actor_cast<caf::actor>(to))
          caf::anon_send(a, std::move(m));
      },
    };
  });
}

} // namespace pyvisor::interp
