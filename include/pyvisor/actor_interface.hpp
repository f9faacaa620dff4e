#pragma once

/// The actor interface of an interpreter, for code running inside CAF actors. Every blocking
/// call of pyvisor::interpreter has a message here; use `request(...).then(...)` and never
/// block. Replies that fail carry a caf::error of category "pyvisor" (see to_error).
///
/// | request                                   | reply                                        |
/// |-------------------------------------------|----------------------------------------------|
/// | (eval_atom, eval_request)                 | pyvisor::value, or error                     |
/// | (stop_atom)                               | bool true once the process is reaped         |
/// | (wait_ready_atom)                         | bool true once ready, or the start error     |
/// | (os_pid_atom)                             | int                                          |
/// | (state_atom)                              | pyvisor::interpreter_state                   |
///
/// The interpreter actor exits when its process ends: with exit_reason::normal after a stop
/// it was asked for, otherwise with the pyvisor error that ended it (interpreter_exited,
/// init_failed, init_timeout, spawn_failed, protocol_error, ...), so a supervisor that monitors
/// or links to it can decide whether to restart.

#include <caf/allowed_unsafe_message_type.hpp>
#include <caf/atom.hpp>
#include <caf/error.hpp>

#include "pyvisor/error.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/interpreter_state.hpp"
#include "pyvisor/value.hpp"
#include "pyvisor/vars.hpp"

namespace pyvisor {

using eval_atom = caf::atom_constant<caf::atom("py_eval")>;
using stop_atom = caf::atom_constant<caf::atom("py_stop")>;
using wait_ready_atom = caf::atom_constant<caf::atom("py_ready")>;
using os_pid_atom = caf::atom_constant<caf::atom("py_pid")>;
using state_atom = caf::atom_constant<caf::atom("py_state")>;

/// The error category of pyvisor errors inside caf::error.
constexpr caf::atom_value error_category = caf::atom("pyvisor");

/// Payload of an eval request.
struct eval_request {
  std::string code;
  pyvisor::vars vars;
  eval_options options;
};

/// Wraps a pyvisor::error into a caf::error (category "pyvisor", the errc as code, the whole
/// error as context).
caf::error to_caf_error(const error& e);

/// Turns any caf::error into a pyvisor::error: pyvisor errors come back whole, CAF's own map
/// to the closest code (request_timeout -> timeout, request_receiver_down -> interpreter_down).
error to_error(const caf::error& e);

} // namespace pyvisor

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::eval_request)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::value)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::error)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interpreter_state)
