#pragma once

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pyvisor/expected.hpp"
#include "pyvisor/interpreter.hpp"
#include "pyvisor/pool.hpp"
#include "pyvisor/supervision.hpp"

namespace caf {
class actor;
}

namespace pyvisor {

namespace detail {
struct supervisor_shared;
}

/// Handle to a running supervision tree (runtime::supervise). Copies share it; the tree runs
/// until stop(), until it gives up, until the last copy of the handle is destroyed (it then
/// stops in the background, as an interpreter does), or until the runtime ends. Thread-safe; the calls block, and
/// actor code uses the messages on actor() instead (pyvisor/supervision.hpp).
class supervisor {
public:
  /// The handle of interpreter child `path` ("id", or "nested/id" inside nested supervisors).
  /// It survives restarts: requests made while its process restarts wait (restart_stash) and
  /// go to the new one; requests in flight at a crash fail once with interpreter_exited.
  expected<interpreter> child(std::string_view path) const;

  /// The handle of pool child `path` (same paths as child()). It survives the pool's restarts:
  /// requests wait in its queue while its workers restart (up to their deadlines).
  expected<pool> child_pool(std::string_view path) const;

  /// Adds a child at the end and starts it; returns once it is up (or with its start error:
  /// it then restarts by its restart type, as any child).
  expected<void> start_child(child_spec spec);

  /// Stops child `id` (its shutdown policy) and keeps it stopped until restart_child.
  expected<void> terminate_child(const std::string& id);

  /// Starts a terminated child again; returns once it is up.
  expected<void> restart_child(const std::string& id);

  /// Forgets a terminated child.
  expected<void> delete_child(const std::string& id);

  /// Every child: state, pid, restarts, last exit, uptime. Answered during restarts and backoff.
  expected<std::vector<child_info>> which_children() const;
  expected<child_counts> count_children() const;

  /// Calls `f` with every lifecycle event from now on (on a CAF worker thread; keep it short).
  void subscribe(std::function<void(const supervision_event&)> f);

  /// Stops every child in reverse start order, then the supervisor; waits until done.
  expected<void> stop();

  /// Whether the supervisor still runs (false once stopped or given up).
  bool running() const;

  /// Waits until the supervisor ended (stopped or gave up) or `timeout` passed; returns
  /// whether it ended.
  bool wait_stopped(std::chrono::milliseconds timeout = forever) const;

  /// Why it ended: nullopt while running or after stop(); the last child's error (with its
  /// Python traceback) after it gave up.
  std::optional<error> end_error() const;

  /// The supervisor actor.
  caf::actor actor() const;

  explicit supervisor(std::shared_ptr<detail::supervisor_shared> s);

private:
  std::shared_ptr<detail::supervisor_shared> s_;
};

} // namespace pyvisor
