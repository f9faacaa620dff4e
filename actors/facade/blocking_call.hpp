#pragma once

#include "facade/interpreter_shared.hpp"
#include "interpreter/request_table.hpp"
#include "protocol/message.hpp"
#include "pyvisor/interpreter_options.hpp"

namespace pyvisor::detail {

/// Submits `r` to the interpreter's request table and blocks until its completion runs (the
/// I/O thread completes the caller straight from the table: one wake-up). The deadline is the
/// table's, as for every other path.
protocol::reply blocking_call(interpreter_shared& s, const interp::request& r, interp::deadline d);

/// blocking_call for eval/call: checks the options, applies the deadline, fills o.capture.
expected<value> blocking_value(interpreter_shared& s, interp::request& r, const eval_options& o);

} // namespace pyvisor::detail
