#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <string>

#include "interpreter/session.hpp"
#include "pyvisor/error.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/interpreter_state.hpp"
#include "pyvisor/supervision.hpp"

namespace pyvisor::interp {

/// Lifecycle facts the interpreter actor publishes for blocking callers (state(), wait_ready,
/// stop, os_pid), so that those never need a message round trip. Only the actor moves the
/// state, with one exception that this object closes: an actor killed unconditionally
/// (exit_reason::kill) never sees its process's exit, so `owner_ended` and `report_exit`
/// together make sure `stopped` is published exactly when both happened.
struct status {
  mutable std::mutex mu;
  std::condition_variable cv;
  interpreter_state state = interpreter_state::spawning;
  std::optional<error> end_error;  ///< why it stopped (or never became ready)
  ready_info info;
  int pid = 0;
  std::string label;
  std::uint64_t restarts = 0;
  std::optional<exit_report> last_exit;
  std::chrono::system_clock::time_point last_exit_time{};
  std::chrono::steady_clock::time_point ready_since{};
  bool exit_seen = false;   // the process exited (I/O thread)
  bool owner_gone = false;  // the actor terminated
  error exit_reason;

  void set(interpreter_state s, std::optional<error> e = std::nullopt) {
    {
      std::lock_guard<std::mutex> g{mu};
      set_locked(s, std::move(e));
    }
    cv.notify_all();
  }

  interpreter_state get() const {
    std::lock_guard<std::mutex> g{mu};
    return state;
  }

  /// A supervised interpreter's process ended and another one starts: back to spawning (the
  /// one move backwards, made only by the actor).
  void restarting(exit_report r) {
    {
      std::lock_guard<std::mutex> g{mu};
      state = interpreter_state::spawning;
      end_error.reset();
      last_exit = std::move(r);
      last_exit_time = std::chrono::system_clock::now();
      exit_seen = false;
      info = ready_info{};
    }
    cv.notify_all();
  }

  /// The process exited (I/O thread). Returns whether the actor is there to handle it;
  /// otherwise `stopped` is published here.
  bool report_exit(const error& reason) {
    bool owner;
    {
      std::lock_guard<std::mutex> g{mu};
      exit_seen = true;
      exit_reason = reason;
      owner = !owner_gone;
      if (!owner)
        set_locked(interpreter_state::stopped, reason);
    }
    cv.notify_all();
    return owner;
  }

  /// The actor terminated (whatever the reason). If the exit came already but the actor never
  /// handled it, `stopped` is published here.
  void owner_ended() {
    {
      std::lock_guard<std::mutex> g{mu};
      owner_gone = true;
      if (exit_seen)
        set_locked(interpreter_state::stopped, exit_reason);
    }
    cv.notify_all();
  }

  /// Waits until `pred(state)` holds or `timeout` passes (`forever`: no bound); returns the
  /// state.
  template <class Pred>
  interpreter_state wait(Pred pred, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk{mu};
    if (timeout == forever)
      cv.wait(lk, [&] { return pred(state); });
    else
      cv.wait_for(lk, timeout, [&] { return pred(state); });
    return state;
  }

private:
  void set_locked(interpreter_state s, std::optional<error> e) {
    // Never move backwards (a late event must not resurrect a stopped interpreter).
    if (static_cast<int>(s) < static_cast<int>(state))
      return;
    state = s;
    if (e && !end_error)
      end_error = std::move(e);
  }
};

} // namespace pyvisor::interp
