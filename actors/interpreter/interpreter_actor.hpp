#pragma once

#include <memory>

#include "interpreter/host_registry.hpp"
#include "interpreter/request_table.hpp"
#include "interpreter/session.hpp"
#include "interpreter/status.hpp"
#include "interpreter/timer_relay.hpp"
#include "io/io_loop.hpp"
#include "process/fork_server.hpp"
#include "process/spawn.hpp"
#include "pyvisor/interpreter_options.hpp"

#include <caf/actor.hpp>
#include <caf/actor_addr.hpp>

namespace pyvisor::interp {

/// Everything the interpreter actor needs to run one Python process.
struct actor_args {
  std::shared_ptr<request_table> table;
  std::shared_ptr<status> st;
  io::io_loop* loop = nullptr;
  std::shared_ptr<host_registry> hosts;
  log_sink log;  ///< runtime events of this interpreter
  caf::actor timers;  ///< the runtime's timer relay (see timer_relay.hpp)
  process::spawn_request spawn;
  /// Set (spawn_mode::fork_server): processes are forked by this fork server, with
  /// `fork_args` as the runner's arguments; `spawn` is then unused.
  std::shared_ptr<process::fork_server> fork;
  std::vector<std::string> fork_args;
  interpreter_options opts;
  /// Set: supervised (core/child_protocol.hpp). The actor waits for child_start, reports each
  /// process's end to the supervisor and starts the next one when told, under the same handle;
  /// it ends only when the supervisor sends it an exit. Unset: it starts at once and ends with
  /// its process.
  caf::actor_addr supervisor;  ///< weak: the supervisor holds its children, not the reverse
  bool supervised = false;
};

/// Spawns the interpreter actor (see interpreter_state.hpp for its lifecycle and
/// actor_interface.hpp for its messages). It starts the process at once.
caf::actor spawn_interpreter_actor(caf::actor_system& sys, actor_args args);

} // namespace pyvisor::interp
