#pragma once

#include <memory>

#include <caf/actor.hpp>

#include "interpreter/request_table.hpp"
#include "interpreter/status.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/runtime.hpp"

namespace pyvisor::detail {

/// What every copy of an interpreter handle shares. Only handles hold it, so its destructor
/// runs when the last handle goes: it asks the actor to stop (in the background).
struct interpreter_shared {
  std::shared_ptr<runtime::impl> rt;  // first member: destroyed last (owns the actor system)
  std::shared_ptr<interp::request_table> table;
  std::shared_ptr<interp::status> st;
  caf::actor actor;
  interpreter_options opts;
  bool supervised = false;  ///< restarted by a supervisor: stop() is its business

  ~interpreter_shared();
};

} // namespace pyvisor::detail
