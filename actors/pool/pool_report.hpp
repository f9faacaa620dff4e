#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include <caf/actor_clock.hpp>

#include "pool/dispatcher.hpp"
#include "pool/worker_slot.hpp"
#include "pyvisor/pool_stats.hpp"

namespace pyvisor::pooling {

/// The pool-wide facts only the pool actor knows.
struct pool_totals {
  std::string name;
  std::uint64_t restarts = 0;
  std::uint64_t recycled = 0;
  bool breaker_open = false;
  std::optional<error> last_start_error;
};

/// pool::stats(): the pool actor's view of its workers joined with the dispatcher's counters.
pool_stats report_stats(const pool_totals& t, const std::map<std::uint32_t, slot>& slots,
                        const dispatcher& disp, caf::actor_clock::time_point now);

} // namespace pyvisor::pooling
