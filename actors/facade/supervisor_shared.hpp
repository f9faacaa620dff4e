#pragma once

#include <condition_variable>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>

#include "facade/interpreter_shared.hpp"
#include "pyvisor/runtime.hpp"
#include "pyvisor/supervision.hpp"

namespace pyvisor::detail {

struct pool_shared;

/// What every copy of a supervisor handle shares, and what its events update.
struct supervisor_shared {
  std::shared_ptr<runtime::impl> rt;  // first member: destroyed last
  caf::actor actor;
  std::string name;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool started = false;  // the first start of every child finished
  bool ended = false;    // stopped or gave up
  std::optional<error> end_error;  // set when it gave up
  std::map<std::string, std::shared_ptr<interpreter_shared>> children;  // by path
  std::map<std::string, std::shared_ptr<pool_shared>> pools;            // by path
  std::vector<std::function<void(const supervision_event&)>> subscribers;

  /// Called for every event of the tree (top-level events change the state above).
  void on_event(const supervision_event& e, bool top_level);

  /// The last handle went: the tree stops (in the background), as an interpreter does.
  ~supervisor_shared();
};

} // namespace pyvisor::detail
