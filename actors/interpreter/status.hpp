#pragma once

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <optional>

#include "interpreter/channel.hpp"
#include "pyvisor/error.hpp"
#include "pyvisor/interpreter_state.hpp"

namespace pyvisor::interp {

/// Lifecycle facts the interpreter actor publishes for blocking callers (state(), wait_ready,
/// stop), so that those never need a message round trip.
struct status {
  mutable std::mutex mu;
  std::condition_variable cv;
  interpreter_state state = interpreter_state::spawning;
  std::optional<error> end_error;  ///< why it stopped (or never became ready)
  ready_info info;
  int pid = 0;

  void set(interpreter_state s, std::optional<error> e = std::nullopt) {
    {
      std::lock_guard<std::mutex> g{mu};
      // Never move backwards (a late event must not resurrect a stopped interpreter).
      if (static_cast<int>(s) < static_cast<int>(state))
        return;
      state = s;
      if (e && !end_error)
        end_error = std::move(e);
    }
    cv.notify_all();
  }

  interpreter_state get() const {
    std::lock_guard<std::mutex> g{mu};
    return state;
  }

  /// Waits until `pred(state)` holds or `timeout` passes (0 = forever); returns the state.
  template <class Pred>
  interpreter_state wait(Pred pred, std::chrono::milliseconds timeout) {
    std::unique_lock<std::mutex> lk{mu};
    if (timeout.count() == 0)
      cv.wait(lk, [&] { return pred(state); });
    else
      cv.wait_for(lk, timeout, [&] { return pred(state); });
    return state;
  }
};

} // namespace pyvisor::interp
