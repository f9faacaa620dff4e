#pragma once

#include <condition_variable>
#include <mutex>
#include <optional>

#include "facade/interpreter_shared.hpp"
#include "protocol/message.hpp"
#include "pyvisor/interpreter_options.hpp"

namespace pyvisor::detail {

/// Sends one request from a plain thread and blocks for its reply: the I/O thread completes
/// the caller directly from the request table (one wake-up). On timeout the request is
/// abandoned (the runner gets `cancel`) and the interpreter actor runs the interrupt
/// escalation for it.
protocol::reply blocking_call(interpreter_shared& s, std::uint64_t id, std::string frame,
                              std::chrono::milliseconds timeout);

/// blocking_call for eval/call results, filling o.capture when set.
expected<value> blocking_value(interpreter_shared& s, std::uint64_t id, std::string frame,
                               const eval_options& o);

} // namespace pyvisor::detail
