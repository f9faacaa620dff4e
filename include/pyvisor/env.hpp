#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pyvisor/expected.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/value.hpp"
#include "pyvisor/vars.hpp"

namespace pyvisor {

namespace detail {
struct env_shared;
struct env_access;
}

/// A namespace inside an interpreter that persists across calls, cloned from the root (the
/// init script's globals). Handles are reference counted: when the last copy goes, the
/// runner is told to drop the namespace. Thread-safe.
///
/// Semantics (documented in the README): a new env is a *shallow* copy of root, then of each
/// `from` source in order, then `vars`; rebinding a name in one env never changes another,
/// but mutable objects (a list made by the init script) are shared, as in Snex. Requests on
/// one interpreter start in the order they were sent, and a drop (or destroy()) issued after
/// an eval on the same env takes effect after that eval started.
class env {
public:
  /// Runs `code` in this env: `v` is bound into the env first and stays; names the code binds
  /// stay too. Errors as interpreter::eval, plus env_not_found (destroyed) and env_lost (the
  /// interpreter died or was stopped).
  expected<value> eval(std::string_view code, const vars& v = {}, const eval_options& o = {});

  /// Calls the function at the dotted `name` (looked up in this env first, then imported), e.g.
  /// `call("math.hypot", {3, 4})`; a coroutine function is awaited. Nothing is compiled.
  expected<value> call(std::string_view name, const std::vector<arg>& args = {},
                       const vars& kwargs = {}, const eval_options& o = {});

  /// Drops the namespace now. Idempotent; later calls fail with env_not_found.
  void destroy();

  /// The env's id inside its interpreter.
  std::uint64_t id() const noexcept;

  /// Whether it was created durable (rebuilt after a restart once supervision exists).
  bool durable() const noexcept;

  /// Made by interpreter::make_env.
  explicit env(std::shared_ptr<detail::env_shared> s);

private:
  friend class interpreter;
  friend struct detail::env_access;
  std::shared_ptr<detail::env_shared> s_;
};

/// One source of a new env: all of `source`'s names, or only / all except the listed ones
/// (not both: that is an invalid_argument error, raised locally). Listing a name in `only`
/// that `source` does not have is an env_key_not_found error.
struct env_source {
  pyvisor::env source;
  std::optional<std::vector<std::string>> only;
  std::optional<std::vector<std::string>> except;
};

/// Options of interpreter::make_env.
struct env_options {
  pyvisor::vars vars;               ///< bound last (highest precedence)
  std::vector<env_source> from;     ///< envs of the same interpreter, applied in order
  bool durable = false;             ///< recorded; rebuilt after restarts (supervision)
  /// Deadline of the make_env request (conventions in interpreter_options.hpp): unset is the
  /// interpreter's default_timeout.
  std::optional<std::chrono::milliseconds> timeout;
  /// Pools: the env is made on the worker that owns this key (pool::make_env); ignored by a
  /// single interpreter.
  std::string key;
};

} // namespace pyvisor
