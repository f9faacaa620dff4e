#include "pyvisor/actor_interface.hpp"

#include <caf/message.hpp>
#include <caf/sec.hpp>

namespace pyvisor {

caf::error to_caf_error(const error& e) {
  return caf::error{static_cast<std::uint8_t>(e.code), error_category, caf::make_message(e)};
}

error to_error(const caf::error& e) {
  if (!e)
    return make_error(errc::none, "");
  if (e.category() == error_category) {
    const auto& ctx = e.context();
    if (ctx.match_elements<error>())
      return ctx.get_as<error>(0);
    return make_error(static_cast<errc>(e.code()), "");
  }
  if (e.category() == caf::atom("system")) {
    switch (static_cast<caf::sec>(e.code())) {
      case caf::sec::request_timeout:
        return make_error(errc::timeout, "request timed out");
      case caf::sec::request_receiver_down:
        return make_error(errc::interpreter_down, "the interpreter actor is gone");
      default:
        break;
    }
  }
  return make_error(errc::interpreter_down, "actor error code " + std::to_string(e.code()));
}

} // namespace pyvisor
