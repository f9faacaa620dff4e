#pragma once

// How pyvisor errors travel over HTTP (docs/http.md): the status code of each errc and the JSON
// error object the gateway and `pyvisor eval --json` print.

#include <string>
#include <string_view>

#include "gateway/json_value.hpp"
#include "pyvisor/error.hpp"

namespace pyvisor::gateway {

/// The HTTP status of a request a pool answered with `code`. A completed call whose user code
/// failed (python_exception, syntax_error, unserializable) is 200: the body carries the error.
int http_status_of(errc code) noexcept;

/// {"error": {"code": "<errc name>", "type": <Python type or null>, "message": ...,
///  "traceback": [lines]}}.
json error_document(const error& e);

/// The gateway's own refusals (bad JSON, unknown pool, missing token, ...): the same shape, with
/// a code that is not an errc name ("bad_request", "not_found", "unauthorized", ...).
json gateway_error_document(std::string_view code, std::string_view message);

} // namespace pyvisor::gateway
