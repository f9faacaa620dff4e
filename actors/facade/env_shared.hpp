#pragma once

#include <atomic>
#include <memory>

#include "facade/interpreter_shared.hpp"
#include "pyvisor/env.hpp"

namespace pyvisor::detail {

/// What every copy of an env handle shares. Holds its interpreter: an env keeps it alive.
struct env_shared {
  std::shared_ptr<interpreter_shared> interp;
  std::uint64_t id = 0;
  bool durable = false;
  std::atomic<bool> destroyed{false};

  /// Tells the runner to drop the namespace (once).
  void drop();
  ~env_shared() { drop(); }
};

/// Lets the facade's other handles (pools) see an env's shared state.
struct env_access {
  static env_shared* shared(const env& e) { return e.s_.get(); }
};

} // namespace pyvisor::detail
