#pragma once

#include <vector>

#include "interpreter/request_table.hpp"

namespace pyvisor::pooling {

/// A request with its own copies of everything, for the pool queue: the interpreter's owned
/// request (what an env recipe keeps) plus what only a live request carries.
struct owned_call {
  interp::owned_request base;
  std::vector<arg> args;
  bool capture = false;
  bool durable = false;
  bool replay = false;

  static owned_call of(const interp::request& r);
  interp::request view() const;
};

} // namespace pyvisor::pooling
