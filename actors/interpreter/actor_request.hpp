#pragma once

/// The requests the actor interface's payloads (pyvisor/actor_interface.hpp) ask for, shared by
/// every actor that answers that interface (interpreters and pools).

#include <optional>

#include "interpreter/request_table.hpp"
#include "pyvisor/actor_interface.hpp"

namespace pyvisor::interp {

/// Options the actor interface cannot honour: a bad timeout, or a capture pointer.
inline std::optional<error> check_actor_options(const eval_options& o) {
  if (auto e = check_timeout(o.timeout))
    return e;
  if (o.capture != nullptr)
    return make_error(errc::invalid_argument,
                      "eval_options::capture is not available through the actor interface");
  return std::nullopt;
}

/// The request of an eval payload; its pointers point into `req`.
inline request request_of(const eval_request& req) {
  request r;
  r.op = request::op_t::eval;
  r.text = req.code;
  r.bound = &req.vars;
  r.file = req.options.file;
  r.line = req.options.line;
  r.env = req.env;
  r.bytes_as_bytearray = req.options.bytes_as_bytearray;
  r.bytes_as_memoryview = req.options.bytes_as_memoryview;
  r.replay = req.options.replay;
  return r;
}

/// The request of a call payload; its pointers point into `req`.
inline request request_of(const call_request& req) {
  request r;
  r.op = request::op_t::call;
  r.text = req.name;
  r.args = &req.args;
  r.bound = &req.kwargs;
  r.env = req.env;
  r.bytes_as_bytearray = req.options.bytes_as_bytearray;
  r.bytes_as_memoryview = req.options.bytes_as_memoryview;
  return r;
}

} // namespace pyvisor::interp
