#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <vector>

#include <caf/actor.hpp>

#include "facade/interpreter_shared.hpp"
#include "pool/dispatcher.hpp"
#include "pool/pool_actor.hpp"
#include "pyvisor/pool.hpp"
#include "pyvisor/runtime.hpp"

namespace pyvisor::detail {

/// What every copy of a pool handle shares.
struct pool_shared {
  std::shared_ptr<runtime::impl> rt;  // first member: destroyed last
  caf::actor actor;
  std::shared_ptr<pooling::dispatcher> disp;
  pool_options opts;

  mutable std::mutex mu;
  std::condition_variable cv;
  pooling::pool_status status;                                          // guarded by mu
  std::map<std::uint32_t, std::shared_ptr<interpreter_shared>> workers;  // guarded by mu
  std::vector<std::function<void(const pool_event&)>> subscribers;     // guarded by mu

  /// The last handle went: the pool stops in the background.
  ~pool_shared();
};

} // namespace pyvisor::detail
