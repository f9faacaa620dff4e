#pragma once

#include <atomic>
#include <memory>

#include "facade/interpreter_shared.hpp"

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

} // namespace pyvisor::detail
