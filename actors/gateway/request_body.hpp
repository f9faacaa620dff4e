#pragma once

// The JSON bodies of the gateway's requests (docs/http.md), parsed and checked: a malformed one
// is a bad_request with a message that names the field.

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "gateway/json_value.hpp"
#include "pyvisor/expected.hpp"
#include "pyvisor/vars.hpp"

namespace pyvisor::gateway {

/// POST .../eval and .../call.
struct call_body {
  std::string code;               ///< eval
  std::string name;               ///< call: the dotted function name
  std::vector<arg> args;          ///< call
  pyvisor::vars vars;             ///< eval: vars; call: kwargs
  std::string key;                ///< routing key (key_affinity pools)
  std::optional<std::chrono::milliseconds> timeout;
  std::string file;               ///< traceback file name (default "<http>")
};

/// POST /v1/pools/NAME/sessions.
struct session_body {
  bool durable = false;
  std::string key;
  std::string init;  ///< code run in the new env (optional)
  pyvisor::vars vars;
  std::optional<std::chrono::milliseconds> idle_ttl;
  std::optional<std::chrono::milliseconds> max_lifetime;
  std::optional<std::chrono::milliseconds> timeout;
};

/// `text` as a JSON object; an empty body is {} when `empty_ok`.
expected<json> parse_body(std::string_view text, bool empty_ok);
/// A call/eval body (`eval`: code required; otherwise name required).
expected<call_body> parse_call_body(const json& doc, bool eval);
expected<session_body> parse_session_body(const json& doc);
/// A duration field: a number of seconds (> 0) or a duration string ("250ms", "5s").
expected<std::chrono::milliseconds> parse_timeout(const json& v, std::string_view field);

} // namespace pyvisor::gateway
