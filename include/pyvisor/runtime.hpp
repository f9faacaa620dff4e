#pragma once

#include <cstddef>
#include <memory>

#include "pyvisor/expected.hpp"
#include "pyvisor/host_function.hpp"
#include "pyvisor/types.hpp"
#include "pyvisor/ndarray.hpp"
#include "pyvisor/interpreter.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/log_record.hpp"
#include "pyvisor/pool.hpp"
#include "pyvisor/supervisor.hpp"

namespace caf {
class actor;
class actor_system;
} // namespace caf

namespace pyvisor {

class deployment;
struct runtime_spec;

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

  /// Starts a supervision tree: its children start in order (each interpreter until its init
  /// script finished); returns once all are up, or the error that made it give up.
  /// Errors: config_error (a bad spec or child options), shutting_down, and the last child's
  /// error when the supervisor gave up during the start.
  expected<supervisor> supervise(supervisor_spec spec);

  /// Starts a pool of interpreters: its workers start concurrently; returns once
  /// `min_ready` of them are ready. Errors: config_error (bad options), shutting_down, and the
  /// last start error (e.g. init_failed with the Python traceback) when the circuit breaker
  /// opened before `min_ready` workers were ready (the pool is then stopped).
  expected<pool> spawn_pool(pool_options opts = {});

  /// Starts everything `spec` declares (pyvisor/deployment.hpp; include it to call this): every
  /// tenant is resolved (its venv must be synced and up to date, its Python version match, its
  /// isolation be supported here), then the supervision tree starts, each pool until
  /// `min_ready` workers are ready, then the pools' durable envs are made. Errors:
  /// config_error (the spec's problems, all of them, one per line; a missing or stale venv
  /// names the fix), the start error of a pool that could not come up, shutting_down.
  expected<deployment> deploy(runtime_spec spec);

  /// The actor system (to spawn your own actors that talk to interpreters).
  caf::actor_system& system();

  /// Lets every interpreter's Python code call `f` as `await pyvisor.call(name, *args)` (and
  /// `pyvisor.cast`). `f` is either typed, `[](int a, std::string b) { ... }` (arguments are
  /// converted, the result packed), or raw, taking a `const host_call&` and returning
  /// `expected<arg>`. See host_function.hpp for threading. Replaces an earlier exposure.
  template <class F>
  void expose(std::string name, F f) {
    expose_function(std::move(name), detail::make_host_function(std::move(f)));
  }

  /// expose() for an already-wrapped host_function.
  void expose_function(std::string name, host_function f);

  /// Routes `pyvisor.call(name, ...)`, `pyvisor.cast(name, ...)` and `pyvisor.send(name, v)`
  /// to actor `a` (messages in actor_interface.hpp). Replaces an earlier exposure.
  void expose_actor(std::string name, caf::actor a);

  /// Removes a function or actor exposed under `name`.
  void unexpose(const std::string& name);

  /// An opaque handle for actor `a` that Python can hold and pass to `pyvisor.send(handle, v)`;
  /// pass it into Python as a var.
  host_handle handle_for(const caf::actor& a);

  struct impl;

private:
  std::shared_ptr<impl> impl_;
};

} // namespace pyvisor
