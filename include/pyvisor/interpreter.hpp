#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "pyvisor/env.hpp"
#include "pyvisor/expected.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/interpreter_stats.hpp"
#include "pyvisor/interpreter_state.hpp"
#include "pyvisor/value.hpp"
#include "pyvisor/vars.hpp"

namespace caf {
class actor;
}

namespace pyvisor {

namespace detail {
struct interpreter_shared;
}

/// Handle to one Python interpreter (one OS process). Copies share the interpreter; when the
/// last copy is destroyed the interpreter is stopped with its stop sequence (in the background).
/// All calls are thread-safe. Blocking calls are for ordinary threads; actor code uses the
/// messages in pyvisor/actor_interface.hpp on `actor()` instead.
class interpreter {
public:
  /// Evaluates `code` in a throwaway copy of the root namespace (the init script's globals)
  /// with `v` bound, and returns what the code `return`s (nil without a return). Blocks.
  /// Top-level `await` is allowed. Errors: python_exception, syntax_error, unserializable,
  /// timeout (the runner is told to cancel), interpreter_exited, interpreter_down, ...
  expected<value> eval(std::string_view code, const vars& v = {}, const eval_options& o = {});

  /// Starts an eval and returns at once; `done` runs exactly once with the result, on
  /// pyvisor's I/O thread (or on the calling thread when the request fails before it is
  /// sent, e.g. `overloaded`). Keep `done` short. Many calls may be in flight; the runner runs
  /// async code concurrently, sync code one at a time. o.timeout applies as for eval (the
  /// same deadline, cancel and escalation); o.capture, when set, is filled before `done` runs
  /// and must stay valid until then.
  void eval_async(std::string_view code, const vars& v, const eval_options& o,
                  std::function<void(expected<value>)> done);

  /// Host-side counters (queue, in flight, busy transitions, bytes).
  interpreter_stats stats() const;

  /// Creates an environment: a shallow copy of root, then each `from` source, then `vars`.
  /// Errors: invalid_argument (only + except, or a source of another interpreter),
  /// env_key_not_found, env_not_found, env_lost, interpreter_down, ...
  expected<env> make_env(const env_options& o = {});

  /// Calls the function at the dotted `name` in a throwaway copy of root (or by import):
  /// `call("math.hypot", {3, 4})` gives 5.0. Faster than eval: nothing is compiled.
  expected<value> call(std::string_view name, const std::vector<arg>& args = {},
                       const vars& kwargs = {}, const eval_options& o = {});

  /// Cancels everything in flight: requests not yet sent fail with `cancelled`; running ones
  /// are cancelled (async) or interrupted with SIGINT (sync code, a KeyboardInterrupt inside
  /// that request only) and their callers get `cancelled`. Code that ignores even that is
  /// killed after interrupt_policy::kill_after. Returns the number of requests interrupted.
  expected<std::size_t> interrupt();

  /// Stops the interpreter with its stop sequence and waits until the process is reaped.
  /// Pending calls fail with interpreter_down. Idempotent. `deadline` bounds the sequence:
  /// a process still alive then is SIGKILLed (`forever`: the stop_sequence as configured).
  /// A supervised interpreter is stopped through its supervisor: invalid_argument here.
  expected<void> stop(std::chrono::milliseconds deadline = forever);

  /// Waits until the interpreter is ready (for sync_start = false), or for its start error.
  expected<void> wait_ready(std::chrono::milliseconds timeout = 60s);

  /// Current lifecycle state.
  interpreter_state state() const;

  /// OS pid of the child (the launcher's, when a launcher is used); 0 before spawn.
  int os_pid() const;

  /// The label used in logs.
  std::string label() const;

  /// The Python version the runner reported ("3.11.7"); empty before ready.
  std::string python_version() const;

  /// The interpreter actor (for request/monitor/link from actor code).
  caf::actor actor() const;

  /// Made by runtime::spawn_interpreter (or a pool).
  explicit interpreter(std::shared_ptr<detail::interpreter_shared> s);

private:
  friend class env;
  // Only handles hold this: when the last one goes, its destructor stops the interpreter.
  std::shared_ptr<detail::interpreter_shared> s_;
};

} // namespace pyvisor
