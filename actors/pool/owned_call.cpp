#include "pool/owned_call.hpp"

namespace pyvisor::pooling {

owned_call owned_call::of(const interp::request& r) {
  owned_call o;
  o.base = interp::owned_request::of(r);
  if (r.args)
    o.args = *r.args;
  o.capture = r.capture;
  o.durable = r.durable;
  o.replay = r.replay;
  return o;
}

interp::request owned_call::view() const {
  auto r = base.view();
  r.args = &args;
  r.capture = capture;
  r.durable = durable;
  r.replay = replay;
  return r;
}

} // namespace pyvisor::pooling
