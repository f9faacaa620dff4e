#pragma once

/// A running runtime_spec (runtime::deploy): the supervision tree of its pools, each pool
/// running its tenant's interpreter with the tenant's isolation.

#include <chrono>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "pyvisor/env.hpp"
#include "pyvisor/expected.hpp"
#include "pyvisor/pool.hpp"
#include "pyvisor/runtime.hpp"
#include "pyvisor/runtime_spec.hpp"
#include "pyvisor/supervisor.hpp"

namespace pyvisor {

namespace detail {
struct deployment_shared;
}

/// Handle to a deployed spec. Copies share it; the tree runs until stop(), until the last copy
/// is destroyed, or until the runtime ends. Thread-safe.
class deployment {
public:
  /// The pool declared as `[pools.NAME]`, wherever it sits in the tree.
  expected<pyvisor::pool> find_pool(std::string_view name) const;

  /// The durable env `[[pools.POOL.envs]] name = ENV` made when the pool started.
  expected<env> find_env(std::string_view pool, std::string_view name) const;

  /// The pool's path in the tree ("api" or "backend/api").
  expected<std::string> path_of(std::string_view pool) const;

  /// The implicit root supervisor ("root").
  pyvisor::supervisor root() const;

  /// The spec as deployed (after defaults and tenant resolution: effective worker options).
  const runtime_spec& spec() const;

  /// Stops the tree (pools in reverse order); waits until every process is reaped.
  expected<void> stop();

  explicit deployment(std::shared_ptr<detail::deployment_shared> s);

private:
  std::shared_ptr<detail::deployment_shared> s_;
};

/// The `[runtime] log_level` rank of a record: 0 debug, 1 info, 2 warning, 3 error. pyvisor's
/// own lines and stdout are info, stderr lines warning; a Python logging record its level
/// (DEBUG 10 -> debug, INFO 20 -> info, WARNING 30 -> warning, ERROR 40 and above -> error).
int log_rank(const log_record& r) noexcept;

/// The runtime options `[runtime]` asks for: scheduler threads, and a log sink that drops
/// runtime lines below `log_level` (pyvisor's own lines are `info`; Python's stderr lines
/// `warning`; stdout lines `info`; logging records their level: log_rank). `log_format` is carried for the daemon; the library's sink
/// writes text.
runtime_options runtime_options_for(const runtime_settings& settings);

} // namespace pyvisor
