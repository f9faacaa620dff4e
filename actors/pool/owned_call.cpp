#include "pool/owned_call.hpp"

namespace pyvisor::pooling {

owned_call owned_call::of(const interp::request& r) {
  owned_call o;
  o.op = r.op;
  o.text = std::string{r.text};
  if (r.bound)
    o.bound = *r.bound;
  if (r.args)
    o.args = *r.args;
  if (r.from)
    o.from = *r.from;
  o.file = std::string{r.file};
  o.line = r.line;
  o.env = r.env;
  o.capture = r.capture;
  o.bytes_as_bytearray = r.bytes_as_bytearray;
  o.durable = r.durable;
  o.replay = r.replay;
  return o;
}

interp::request owned_call::view() const {
  interp::request r;
  r.op = op;
  r.text = text;
  r.bound = &bound;
  r.args = &args;
  r.from = &from;
  r.file = file;
  r.line = line;
  r.env = env;
  r.capture = capture;
  r.bytes_as_bytearray = bytes_as_bytearray;
  r.durable = durable;
  r.replay = replay;
  return r;
}

} // namespace pyvisor::pooling
