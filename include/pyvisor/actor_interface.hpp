#pragma once

/// The actor interface of an interpreter, for code running inside CAF actors. Every blocking
/// call of pyvisor::interpreter has a message here; use `request(...).then(...)` and never
/// block. Replies that fail carry a caf::error of category "pyvisor" (see to_error).
///
/// | request                                   | reply                                        |
/// |-------------------------------------------|----------------------------------------------|
/// | (eval_atom, eval_request)                 | pyvisor::value, or error                     |
/// | (call_atom, call_request)                 | pyvisor::value, or error                     |
/// | (make_env_atom, make_env_request)         | std::uint64_t env id, or error               |
/// | (drop_env_atom, std::uint64_t env)        | nothing (fire and forget; idempotent)        |
/// | (interrupt_atom)                          | std::size_t requests interrupted             |
/// | (stop_atom)                               | bool true once the process is reaped         |
/// | (stop_atom, std::chrono::milliseconds d)  | the same, but SIGKILL if not done within `d` |
/// | (wait_ready_atom)                         | bool true once ready, or the start error     |
/// | (os_pid_atom)                             | int                                          |
/// | (state_atom)                              | pyvisor::interpreter_state                   |
///
/// The interpreter actor exits when its process ends: with exit_reason::normal after a stop
/// it was asked for, otherwise with the pyvisor error that ended it (interpreter_exited,
/// init_failed, init_timeout, spawn_failed, protocol_error, ...), so a supervisor that monitors
/// or links to it can decide whether to restart.

#include <caf/atom.hpp>
#include <caf/error.hpp>
#include <caf/meta/load_callback.hpp>
#include <caf/meta/type_name.hpp>
#include <caf/none.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <vector>

#include "pyvisor/error.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/interpreter_state.hpp"
#include "pyvisor/value.hpp"
#include "pyvisor/vars.hpp"

namespace caf {
class actor_system_config;
}

namespace pyvisor {

using eval_atom = caf::atom_constant<caf::atom("py_eval")>;
using stop_atom = caf::atom_constant<caf::atom("py_stop")>;
using wait_ready_atom = caf::atom_constant<caf::atom("py_ready")>;
using os_pid_atom = caf::atom_constant<caf::atom("py_pid")>;
using state_atom = caf::atom_constant<caf::atom("py_state")>;
using call_atom = caf::atom_constant<caf::atom("py_call")>;
using make_env_atom = caf::atom_constant<caf::atom("py_mkenv")>;
using drop_env_atom = caf::atom_constant<caf::atom("py_dropenv")>;
using interrupt_atom = caf::atom_constant<caf::atom("py_intr")>;

/// Messages an actor exposed with runtime::expose_actor receives from Python:
/// - (host_call_atom, std::string name, std::vector<value> args) from `await pyvisor.call(name,
///   *args)`: reply with anything packable into a pyvisor::arg (a value, an int, a string...)
///   wrapped as pyvisor::arg, or an error (Python gets pyvisor.HostError with its text);
/// - (host_cast_atom, std::string name, std::vector<value> args) from `pyvisor.cast`: no reply;
/// - (python_message_atom, value v) from `pyvisor.send(target, v)`, where target is the exposed
///   name or a handle from runtime::handle_for.
using host_call_atom = caf::atom_constant<caf::atom("py_hcall")>;
using host_cast_atom = caf::atom_constant<caf::atom("py_hcast")>;
using python_message_atom = caf::atom_constant<caf::atom("py_msg")>;

/// The error category of pyvisor errors inside caf::error.
constexpr caf::atom_value error_category = caf::atom("pyvisor");

/// Payload of an eval request. `env` 0 runs in a throwaway copy of root. `options.capture` is
/// ignored here (blocking calls only).
struct eval_request {
  std::string code;
  pyvisor::vars vars;
  eval_options options;
  std::uint64_t env = 0;
};

/// Payload of a call request: the function at the dotted `name`, resolved in the env (or root)
/// first, then by import.
struct call_request {
  std::string name;
  std::vector<arg> args;
  pyvisor::vars kwargs;
  eval_options options;
  std::uint64_t env = 0;
};

/// One source of a new environment; `only` and `except` are mutually exclusive.
struct env_from {
  std::uint64_t env = 0;
  std::optional<std::vector<std::string>> only;
  std::optional<std::vector<std::string>> except;
};

/// Payload of a make_env request. The new env is a shallow copy of root, then each source in
/// order, then `vars`. Envs made through the actor interface live until drop_env.
struct make_env_request {
  pyvisor::vars vars;
  std::vector<env_from> from;
  std::optional<std::chrono::milliseconds> timeout;  ///< unset: the default_timeout
  bool durable = false;  ///< rebuilt on the next process of a supervised interpreter
  std::string key;       ///< pools: made on the worker that owns this key
};

/// Wraps a pyvisor::error into a caf::error (category "pyvisor", the errc as code, the whole
/// error as context).
caf::error to_caf_error(const error& e);

/// Turns any caf::error into a pyvisor::error: pyvisor errors come back whole, CAF's own map
/// to the closest code (request_timeout -> timeout, request_receiver_down -> interpreter_down).
error to_error(const caf::error& e);

} // namespace pyvisor

// ---- serialization (CAF 0.17: inspect + add_message_type) -----------------------------------
// Every type above travels in messages, locally and (with caf::io) between nodes. Optional
// fields travel as a flag plus the value; values and args as their validated msgpack bytes;
// eval_options::capture (a pointer) never travels.

namespace pyvisor {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, error& x) {
  return f(caf::meta::type_name("pyvisor::error"), x.code, x.message, x.python_type, x.traceback);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, value& x) {
  std::string bytes;
  if constexpr (Inspector::reads_state)
    bytes = to_msgpack(x);
  auto load = caf::meta::load_callback([&]() -> caf::error {
    auto v = value_from_msgpack(std::move(bytes));
    if (!v)
      return to_caf_error(v.error());
    x = std::move(*v);
    return caf::none;
  });
  return f(caf::meta::type_name("pyvisor::value"), bytes, load);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, arg& x) {
  std::string bytes;
  if constexpr (Inspector::reads_state)
    bytes = x.bytes();
  auto load = caf::meta::load_callback([&]() -> caf::error {
    auto a = arg::from_msgpack(std::move(bytes));
    if (!a)
      return to_caf_error(a.error());
    x = std::move(*a);
    return caf::none;
  });
  return f(caf::meta::type_name("pyvisor::arg"), bytes, load);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, var& x) {
  return f(caf::meta::type_name("pyvisor::var"), x.name, x.value);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, eval_options& x) {
  bool has_timeout = x.timeout.has_value();
  std::chrono::milliseconds timeout = x.timeout.value_or(std::chrono::milliseconds{0});
  auto load = caf::meta::load_callback([&]() -> caf::error {
    if (has_timeout)
      x.timeout = timeout;
    else
      x.timeout.reset();
    x.capture = nullptr;
    return caf::none;
  });
  return f(caf::meta::type_name("pyvisor::eval_options"), has_timeout, timeout, x.file, x.line,
           x.bytes_as_bytearray, x.bytes_as_memoryview, x.replay, x.key, load);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, eval_request& x) {
  return f(caf::meta::type_name("pyvisor::eval_request"), x.code, x.vars, x.options, x.env);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, call_request& x) {
  return f(caf::meta::type_name("pyvisor::call_request"), x.name, x.args, x.kwargs, x.options,
           x.env);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, env_from& x) {
  bool has_only = x.only.has_value(), has_except = x.except.has_value();
  std::vector<std::string> only = x.only.value_or(std::vector<std::string>{});
  std::vector<std::string> except = x.except.value_or(std::vector<std::string>{});
  auto load = caf::meta::load_callback([&]() -> caf::error {
    x.only = has_only ? std::optional{std::move(only)} : std::nullopt;
    x.except = has_except ? std::optional{std::move(except)} : std::nullopt;
    return caf::none;
  });
  return f(caf::meta::type_name("pyvisor::env_from"), x.env, has_only, only, has_except, except,
           load);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, make_env_request& x) {
  bool has_timeout = x.timeout.has_value();
  std::chrono::milliseconds timeout = x.timeout.value_or(std::chrono::milliseconds{0});
  auto load = caf::meta::load_callback([&]() -> caf::error {
    if (has_timeout)
      x.timeout = timeout;
    else
      x.timeout.reset();
    return caf::none;
  });
  return f(caf::meta::type_name("pyvisor::make_env_request"), x.vars, x.from, has_timeout,
           timeout, x.durable, x.key, load);
}

/// Registers every message type of this interface with a CAF config (names "pyvisor::..."),
/// which serialization needs: the runtime does it for its own system; call it for a system of
/// yours that exchanges pyvisor messages with other nodes.
void add_message_types(caf::actor_system_config& cfg);

} // namespace pyvisor
