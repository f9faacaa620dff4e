#include "interpreter/timer_relay.hpp"

#include <caf/all.hpp>

namespace pyvisor::interp {

namespace {

// A class rather than a function-based actor: CAF 0.17 spawns an argument-less function actor
// by dereferencing an empty std::shared_ptr<std::tuple<>> (UBSan reports it).
class timer_relay : public caf::event_based_actor {
public:
  using caf::event_based_actor::event_based_actor;

  caf::behavior make_behavior() override {
    return {
      [](timer_relay_atom, const caf::actor_addr& to, caf::message& m) {
        if (auto a = caf::actor_cast<caf::actor>(to))
          caf::anon_send(a, std::move(m));
      },
    };
  }
};

} // namespace

caf::actor spawn_timer_relay(caf::actor_system& sys) {
  return sys.spawn<timer_relay>();
}

} // namespace pyvisor::interp
