#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "interpreter/request_table.hpp"

namespace pyvisor::pooling {

/// A request with its own copies of everything, for the pool queue.
struct owned_call {
  interp::request::op_t op = interp::request::op_t::eval;
  std::string text;
  vars bound;
  std::vector<arg> args;
  std::vector<protocol::env_spec> from;
  std::string file = "<pyvisor>";
  int line = 1;
  std::uint64_t env = 0;
  bool capture = false;
  bool bytes_as_bytearray = false;
  bool durable = false;
  bool replay = false;

  static owned_call of(const interp::request& r);
  interp::request view() const;
};

} // namespace pyvisor::pooling
