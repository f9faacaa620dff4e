#pragma once

#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string_view>

namespace pyvisor {

/// Every error code pyvisor reports. Stable: new codes are appended, never renumbered.
/// `to_string` gives the snake_case name used in docs, in the CLI and on the wire.
enum class errc : std::uint8_t {
  none = 0,            ///< Not an error (never carried by a pyvisor::error).
  python_exception,    ///< The Python code raised; see python_type and traceback.
  syntax_error,        ///< The code did not compile (SyntaxError, IndentationError, ...).
  timeout,             ///< The call did not finish in time; the runner was told to cancel it.
  cancelled,           ///< The request was cancelled before it finished.
  env_not_found,       ///< The environment was dropped.
  env_lost,            ///< The environment's interpreter died or restarted.
  interpreter_exited,  ///< The Python process exited or was killed; message says code/signal.
  interpreter_down,    ///< The interpreter was stopped (or is stopping) before the call ran.
  init_failed,         ///< The init script raised or did not compile.
  init_timeout,        ///< The init script did not finish within init_script_timeout.
  spawn_failed,        ///< The Python process could not be started (bad executable, cwd, ...).
  overloaded,          ///< Busy limits reached; the request was not admitted.
  unserializable,      ///< A value could not be encoded; message names type and path.
  protocol_error,      ///< The peer broke the wire protocol; the interpreter is killed.
  frame_too_large,     ///< A frame exceeded max_frame_bytes.
  config_error,        ///< Invalid options or configuration.
  shutting_down,       ///< The runtime is shutting down.
  invalid_argument,    ///< A local argument was invalid; nothing was sent.
  type_mismatch,       ///< A value did not convert to the requested C++ type.
  env_key_not_found,   ///< make_env: an `only` key does not exist in its source env.
  pool_unavailable,    ///< A pool's circuit breaker is open: its workers fail to start.
};

/// The snake_case name of `code`, e.g. "init_timeout".
std::string_view to_string(errc code) noexcept;

/// Writes the snake_case name (so test failures and logs print names, not bytes).
std::ostream& operator<<(std::ostream& os, errc code);

/// Parses a snake_case name back into a code.
std::optional<errc> errc_from_string(std::string_view name) noexcept;

} // namespace pyvisor
