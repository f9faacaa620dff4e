#pragma once

#include <cstddef>
#include <memory>

#include "pyvisor/expected.hpp"
#include "pyvisor/interpreter.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/log_record.hpp"

namespace caf {
class actor_system;
}

namespace pyvisor {

/// Options of a runtime.
struct runtime_options {
  /// Receives the interpreters' stdout/stderr lines and runtime events; default: stderr.
  log_sink log = stderr_log_sink;
  /// CAF scheduler threads; 0 = CAF's default.
  std::size_t scheduler_threads = 0;
};

/// Owns everything pyvisor runs on: a CAF actor system (scheduler policy `sharing`, measured
/// ~7x faster than work stealing for messages from non-CAF threads) and one libuv I/O thread
/// that does all pipe I/O and child reaping. No global state: several runtimes may coexist.
/// The destructor stops every interpreter still running (each with its stop sequence), so no
/// process outlives the runtime.
class runtime {
public:
  explicit runtime(runtime_options opts = {});
  ~runtime();
  runtime(const runtime&) = delete;
  runtime& operator=(const runtime&) = delete;

  /// Starts an interpreter. With sync_start (default) returns once the init script finished;
  /// errors: spawn_failed, init_failed, init_timeout, interpreter_exited, config_error.
  expected<interpreter> spawn_interpreter(interpreter_options opts = {});

  /// The actor system (to spawn your own actors that talk to interpreters).
  caf::actor_system& system();

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace pyvisor
