#include "gateway/http_errors.hpp"

namespace pyvisor::gateway {

int http_status_of(errc code) noexcept {
  switch (code) {
    case errc::none:
    case errc::python_exception:
    case errc::syntax_error:
    case errc::unserializable:
      return 200;
    case errc::config_error:
    case errc::invalid_argument:
    case errc::type_mismatch:
    case errc::env_key_not_found:
      return 400;
    case errc::cancelled:
      return 409;
    case errc::env_not_found:
    case errc::env_lost:
      return 410;
    case errc::frame_too_large:
      return 413;
    case errc::overloaded:
      return 429;
    case errc::interpreter_exited:
    case errc::protocol_error:
      return 502;
    case errc::interpreter_down:
    case errc::shutting_down:
    case errc::init_failed:
    case errc::init_timeout:
    case errc::spawn_failed:
    case errc::pool_unavailable:
      return 503;
    case errc::timeout:
      return 504;
  }
  return 500;
}

json error_document(const error& e) {
  json err = json::object();
  err["code"] = std::string(to_string(e.code));
  err["type"] = e.python_type.empty() ? json(nullptr) : json(e.python_type);
  err["message"] = e.message;
  json tb = json::array();
  for (const std::string& line : e.traceback)
    tb.push_back(line);
  err["traceback"] = std::move(tb);
  json doc = json::object();
  doc["error"] = std::move(err);
  return doc;
}

json gateway_error_document(std::string_view code, std::string_view message) {
  json err = json::object();
  err["code"] = std::string(code);
  err["type"] = nullptr;
  err["message"] = std::string(message);
  err["traceback"] = json::array();
  json doc = json::object();
  doc["error"] = std::move(err);
  return doc;
}

} // namespace pyvisor::gateway
