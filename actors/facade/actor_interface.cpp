#include "pyvisor/actor_interface.hpp"

#include <caf/actor_system_config.hpp>
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

namespace pyvisor {

void add_message_types(caf::actor_system_config& cfg) {
  cfg.add_message_type<error>("pyvisor::error");
  cfg.add_message_type<value>("pyvisor::value");
  cfg.add_message_type<arg>("pyvisor::arg");
  cfg.add_message_type<std::vector<value>>("std::vector<pyvisor::value>");
  cfg.add_message_type<eval_request>("pyvisor::eval_request");
  cfg.add_message_type<call_request>("pyvisor::call_request");
  cfg.add_message_type<make_env_request>("pyvisor::make_env_request");
  cfg.add_message_type<interpreter_state>("pyvisor::interpreter_state");
}

} // namespace pyvisor
