#pragma once

// The value types of a request: what a handle (or the actor interface) asks an interpreter to
// do, its owned copy (an env recipe's step), its deadline, and the checks of per-call options.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "protocol/message.hpp"
#include "pyvisor/error.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/vars.hpp"

namespace pyvisor::interp {

using clock = std::chrono::steady_clock;

/// What a handle (or the actor interface) asks an interpreter to do. The table encodes it;
/// the pointers are only read during submit().
struct request {
  enum class op_t : std::uint8_t { eval, call, make_env, init } op = op_t::eval;
  std::string_view text;                      ///< code (eval, init) or dotted name (call)
  const vars* bound = nullptr;                ///< eval/init: vars; call: kwargs; make_env: vars
  const std::vector<arg>* args = nullptr;     ///< call
  const std::vector<protocol::env_spec>* from = nullptr;  ///< make_env
  std::string_view file = "<pyvisor>";
  int line = 1;
  std::uint64_t env = 0;  ///< eval/call: run in this env; make_env: the new env's id
  bool capture = false;
  bool bytes_as_bytearray = false;
  bool bytes_as_memoryview = false;
  bool durable = false;  ///< make_env: record the env's recipe (rebuilt after a restart)
  bool replay = false;   ///< eval on a durable env: record it in the recipe when it succeeds
};

/// A request with its own copies of everything (an env recipe's steps).
struct owned_request {
  request::op_t op = request::op_t::eval;
  std::string text;
  vars bound;
  std::vector<protocol::env_spec> from;
  std::string file = "<pyvisor>";
  int line = 1;
  std::uint64_t env = 0;
  bool bytes_as_bytearray = false;
  bool bytes_as_memoryview = false;

  static owned_request of(const request& r);
  request view() const;
};

/// When a request gives up: at `at`, reported as "did not finish within `ms` ms".
struct deadline {
  clock::time_point at = clock::time_point::max();  ///< max: none
  std::int64_t ms = 0;

  static deadline none() { return {}; }
  /// `timeout` as the convention of eval_options::timeout: `forever` is none.
  static deadline after(std::chrono::milliseconds timeout);
  bool set() const noexcept { return at != clock::time_point::max(); }
};

/// Checks a per-call timeout (eval_options::timeout): unset, `forever` or positive.
std::optional<error> check_timeout(const std::optional<std::chrono::milliseconds>& timeout);

/// The deadline of a request whose options say `timeout` (unset: `fallback`, the
/// interpreter's default_timeout).
deadline deadline_for(const std::optional<std::chrono::milliseconds>& timeout,
                      std::chrono::milliseconds fallback);

/// Checks one `from` source of make_env: `only` or `except`, not both.
std::optional<error> check_env_source(bool has_only, bool has_except);

} // namespace pyvisor::interp
