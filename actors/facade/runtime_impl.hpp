#pragma once

#include <memory>
#include <mutex>
#include <optional>
#include <utility>
#include <vector>

#include <caf/actor.hpp>
#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>

#include "facade/interpreter_shared.hpp"
#include "interpreter/host_registry.hpp"
#include "interpreter/status.hpp"
#include "io/io_loop.hpp"
#include "facade/fork_server_registry.hpp"
#include "process/python_resolver.hpp"
#include "pyvisor/runtime.hpp"
#include "pyvisor/supervisor.hpp"

namespace pyvisor {

namespace detail {
struct supervisor_shared;
struct pool_shared;
}

/// Checks interpreter options that need no system call (limits, durations, names): config_error.
std::optional<error> check_interpreter_options(const interpreter_options& opts);

/// Everything a runtime owns. Handles keep it alive (interpreter_shared::rt), so it outlives
/// the runtime object while handles exist.
struct runtime::impl : std::enable_shared_from_this<runtime::impl> {
  runtime_options opts;
  std::mutex log_mu;
  process::python_resolver resolver;
  detail::fork_server_registry forks;  ///< templates of spawn_mode::fork_server interpreters
  std::shared_ptr<interp::host_registry> hosts = std::make_shared<interp::host_registry>();
  std::unique_ptr<io::io_loop> loop;
  std::unique_ptr<caf::actor_system_config> cfg;
  std::unique_ptr<caf::actor_system> sys;
  caf::actor timers;  // the timer relay every interpreter actor sends its timers through
  std::mutex mu;
  std::vector<std::pair<std::weak_ptr<interp::status>, caf::actor_addr>> live;
  std::vector<caf::actor_addr> supervisors;  // top-level supervisor actors
  bool shut_down = false;

  void log(const log_record& r);

  /// Validates `opts`, builds the command line and spawns the interpreter actor. With
  /// `supervisor` set the actor is supervised (it waits for child_start); otherwise it starts.
  expected<std::shared_ptr<detail::interpreter_shared>> make_interpreter(interpreter_options opts,
                                                                        caf::actor supervisor);

  /// Starts a supervision tree (facade/supervisor.cpp).
  expected<pyvisor::supervisor> supervise(supervisor_spec spec);

  /// Validates `opts` and spawns the pool actor (facade/pool.cpp). With `parent` set the pool
  /// is a child of that supervisor (it starts at child_start); otherwise it starts at once and
  /// the runtime's shutdown stops it.
  expected<std::shared_ptr<detail::pool_shared>> make_pool(pool_options opts,
                                                           const caf::actor& parent);

  /// Stops supervisors, then every interpreter, then the actor system and the I/O loop.
  void shutdown();

  ~impl() { shutdown(); }
};

} // namespace pyvisor
