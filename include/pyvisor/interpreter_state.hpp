#pragma once

#include <cstdint>
#include <iosfwd>
#include <string_view>

namespace pyvisor {

/// Lifecycle of one interpreter:
///
///     spawning -> initializing -> ready -> draining -> stopped
///         \             \            \________________/^
///          \_____________\___________________________/   (spawn failure, init failure,
///                                                         crash: straight to stopped)
///
/// - spawning: the process is being started.
/// - initializing: the runner said `ready`; the init script runs. Calls wait.
/// - ready: calls are served.
/// - draining: stop() was called; new calls fail with interpreter_down, the stop sequence runs.
/// - stopped: the process is gone and reaped; every pending call has failed.
enum class interpreter_state : std::uint8_t { spawning, initializing, ready, draining, stopped };

/// "spawning", "initializing", ...
std::string_view to_string(interpreter_state s) noexcept;

/// Writes the name ("ready").
std::ostream& operator<<(std::ostream& os, interpreter_state s);

} // namespace pyvisor
