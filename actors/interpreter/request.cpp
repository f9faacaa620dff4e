#include "interpreter/request.hpp"

namespace pyvisor::interp {

deadline deadline::after(std::chrono::milliseconds timeout) {
  if (timeout == forever)
    return none();
  return deadline{clock::now() + timeout, static_cast<std::int64_t>(timeout.count())};
}

std::optional<error> check_timeout(const std::optional<std::chrono::milliseconds>& timeout) {
  if (timeout && *timeout != forever && timeout->count() <= 0)
    return make_error(errc::invalid_argument,
                      "a timeout must be positive or pyvisor::forever (got " +
                        std::to_string(timeout->count()) + " ms); leave it unset for the default");
  return std::nullopt;
}

deadline deadline_for(const std::optional<std::chrono::milliseconds>& timeout,
                      std::chrono::milliseconds fallback) {
  return deadline::after(timeout ? *timeout : fallback);
}

std::optional<error> check_env_source(bool has_only, bool has_except) {
  if (has_only && has_except)
    return make_error(errc::invalid_argument, "an env source takes `only` or `except`, not both");
  return std::nullopt;
}

owned_request owned_request::of(const request& r) {
  owned_request o;
  o.op = r.op;
  o.text = std::string{r.text};
  if (r.bound)
    o.bound = *r.bound;
  if (r.from)
    o.from = *r.from;
  o.file = std::string{r.file};
  o.line = r.line;
  o.env = r.env;
  o.bytes_as_bytearray = r.bytes_as_bytearray;
  o.bytes_as_memoryview = r.bytes_as_memoryview;
  return o;
}

request owned_request::view() const {
  request r;
  r.op = op;
  r.text = text;
  r.bound = &bound;
  r.from = &from;
  r.file = file;
  r.line = line;
  r.env = env;
  r.bytes_as_bytearray = bytes_as_bytearray;
  r.bytes_as_memoryview = bytes_as_memoryview;
  return r;
}

} // namespace pyvisor::interp
