#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "pyvisor/expected.hpp"
#include "pyvisor/interpreter_options.hpp"
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

  /// Stops the interpreter with its stop sequence and waits until the process is reaped.
  /// Pending calls fail with interpreter_down. Idempotent.
  expected<void> stop();

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
  // Only handles hold this: when the last one goes, its destructor stops the interpreter.
  std::shared_ptr<detail::interpreter_shared> s_;
};

} // namespace pyvisor
