#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string_view>
#include <vector>

#include <caf/atom.hpp>

#include "pyvisor/env.hpp"
#include "pyvisor/expected.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/pool_options.hpp"
#include "pyvisor/pool_stats.hpp"
#include "pyvisor/value.hpp"
#include "pyvisor/vars.hpp"

namespace caf {
class actor;
}

namespace pyvisor {

namespace detail {
struct pool_shared;
}

/// Handle to a pool of interpreters (runtime::spawn_pool): N supervised workers with one spec
/// and a dispatcher. Its calls mirror pyvisor::interpreter's, with the same request and option
/// types, so code switches from one interpreter to a pool by changing the line that makes it.
///
/// A worker that crashes fails only the requests it was running (interpreter_exited, at most
/// once) and is restarted with backoff while the others keep serving; requests that no worker
/// can take yet wait in the pool queue. Copies share the pool; when the last copy goes the pool
/// stops in the background (as an interpreter does). Thread-safe.
class pool {
public:
  /// As interpreter::eval, on the worker the dispatch policy picks (o.key: the key's worker).
  /// Extra errors: overloaded (pool queue full), timeout (waited in the queue past
  /// queue_timeout or the request's deadline), pool_unavailable (circuit breaker open).
  expected<value> eval(std::string_view code, const vars& v = {}, const eval_options& o = {});

  /// As interpreter::eval_async.
  void eval_async(std::string_view code, const vars& v, const eval_options& o,
                  std::function<void(expected<value>)> done);

  /// As interpreter::call.
  expected<value> call(std::string_view name, const std::vector<arg>& args = {},
                       const vars& kwargs = {}, const eval_options& o = {});

  /// Makes an env on one worker (o.key: the key's worker) and pins it there: its requests go
  /// to that worker. A durable env is rebuilt when its worker restarts after a crash; an env
  /// is lost when its worker leaves the pool (recycling, scaling down).
  expected<env> make_env(const env_options& o = {});

  /// Cancels every request in the pool queue and in flight on every worker (as
  /// interpreter::interrupt); returns how many were interrupted or cancelled.
  expected<std::size_t> interrupt();

  /// Sets the number of workers (within nothing: resize overrides autoscale's bounds, which
  /// become [n, max(n, max_workers)]). Growing starts workers; shrinking drains the least busy
  /// ones (they finish their requests, take no new ones, then stop). Returns at once.
  expected<void> resize(std::size_t n);

  /// Pool-wide and per-worker counters and states.
  pool_stats stats() const;

  /// Calls `f` with every lifecycle event from now on (on a CAF worker thread; keep it short).
  void subscribe(std::function<void(const pool_event&)> f);

  /// Waits until `n` workers are ready, or `timeout` passed; returns whether they are.
  bool wait_ready(std::size_t n, std::chrono::milliseconds timeout = 60s) const;

  /// Stops every worker (queued requests get interpreter_down; running ones finish within the
  /// workers' shutdown policy) and waits until all are reaped. Idempotent.
  expected<void> stop();

  /// The pool actor (actor interface below).
  caf::actor actor() const;

  explicit pool(std::shared_ptr<detail::pool_shared> s);

private:
  std::shared_ptr<detail::pool_shared> s_;
};

/// The actor interface of a pool (pool::actor()) is the interpreter's (actor_interface.hpp):
/// eval_atom, call_atom, make_env_atom (the env id is unique within the pool and routes later
/// requests with `env` set to its worker), drop_env_atom, interrupt_atom, stop_atom; plus:
///
/// | request                                   | reply                                        |
/// |-------------------------------------------|----------------------------------------------|
/// | (pool_resize_atom, std::size_t n)         | bool true, or the error                      |
/// | (pool_stats_atom)                         | pyvisor::pool_stats (local actors only)      |
using pool_resize_atom = caf::atom_constant<caf::atom("pl_resize")>;
using pool_stats_atom = caf::atom_constant<caf::atom("pl_stats")>;

} // namespace pyvisor
