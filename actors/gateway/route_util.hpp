#pragma once

// Small pieces every route uses: the content-type check and turning a call's result into the
// response (value document, or error object with errc's status).

#include <optional>
#include <string_view>

#include <httplib.h>

#include "gateway/http_errors.hpp"
#include "gateway/http_gateway.hpp"
#include "pyvisor/value.hpp"

namespace pyvisor::gateway {

/// A body must be JSON: no Content-Type, application/json, or what curl -d and plain clients
/// send (application/x-www-form-urlencoded, text/plain), read as JSON; 415 otherwise.
bool json_content(const httplib::Request& req, httplib::Response& res);

/// The request's body as a JSON object (json_content, then parse_body); answers 415/400 and
/// returns nullopt otherwise.
std::optional<json> read_json_body(const httplib::Request& req, httplib::Response& res,
                                   bool empty_ok);

/// 200 {"value": ...}; or the error object with http_status_of(code). `observe` gets "ok" or
/// the errc name.
template <class Observe>
void answer_value(httplib::Response& res, const expected<value>& r, Observe observe) {
  if (!r) {
    observe(to_string(r.error().code));
    send_json(res, http_status_of(r.error().code), error_document(r.error()));
    return;
  }
  json doc = json::object();
  try {
    doc["value"] = to_json_value(*r);
  } catch (const std::exception& e) {
    const auto err = make_error(errc::unserializable,
                                std::string{"cannot render the result as JSON: "} + e.what());
    observe(to_string(err.code));
    send_json(res, http_status_of(err.code), error_document(err));
    return;
  }
  observe("ok");
  send_json(res, 200, doc);
}

} // namespace pyvisor::gateway
