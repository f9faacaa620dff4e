#pragma once

// The gateway's sessions (docs/http.md): an env pinned to one worker of a pool, addressed by an
// unguessable id, ended by DELETE, by its idle TTL or its maximum lifetime, or lost with its
// worker. Ended sessions leave a tombstone so their id answers 410 (with the reason) instead of
// 404 for a while.

#include <chrono>
#include <cstddef>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "pyvisor/env.hpp"

namespace pyvisor::gateway {

using session_clock = std::chrono::steady_clock;

struct session {
  std::string id;
  std::string pool;
  std::string tenant;
  bool durable = false;
  std::optional<pyvisor::env> env;  ///< always set by the gateway (empty only in unit tests)
  std::chrono::system_clock::time_point created_wall;
  session_clock::time_point created;
  // Guarded by the table's mutex.
  session_clock::time_point last_used;
  std::chrono::milliseconds idle_ttl{0};
  std::chrono::milliseconds max_lifetime{0};

  explicit session(std::optional<pyvisor::env> e) : env(std::move(e)) {}
  /// Drops the env in its interpreter (idempotent).
  void destroy() {
    if (env)
      env->destroy();
  }
};

class session_table {
public:
  /// A looked-up session, or why there is none.
  struct lookup_result {
    std::shared_ptr<session> found;
    bool gone = false;   ///< it existed and ended (410); otherwise unknown (404)
    std::string reason;  ///< why it ended
    // Copied under the table's lock when found:
    session_clock::time_point last_used;
    std::chrono::milliseconds idle_ttl{0};
    std::chrono::milliseconds max_lifetime{0};
  };

  explicit session_table(std::size_t max_sessions) : max_(max_sessions) {}

  /// Adds a session with a fresh id; nullptr when max_sessions are open.
  std::shared_ptr<session> add(std::string pool, std::string tenant, bool durable,
                               std::optional<pyvisor::env> e,
                               std::chrono::milliseconds idle_ttl,
                               std::chrono::milliseconds max_lifetime);
  /// Finds `id`; with `touch`, marks it used now (its idle TTL starts over).
  lookup_result use(const std::string& id, bool touch = true);
  /// Changes a session's TTLs (0: unchanged).
  bool extend(const std::string& id, std::chrono::milliseconds idle_ttl,
              std::chrono::milliseconds max_lifetime);
  /// Ends `id` (DELETE, or its env was lost): true when it was open. Its env is destroyed.
  bool end(const std::string& id, const std::string& reason);
  /// Ends every session of `pool` (the pool was removed or replaced by a reload).
  std::size_t end_pool(const std::string& pool, const std::string& reason);
  /// Ends the sessions past their idle TTL or lifetime; returns how many.
  std::size_t sweep(session_clock::time_point now = session_clock::now());
  /// Ends every session (shutdown).
  void clear(const std::string& reason);

  std::size_t size() const;
  /// Open sessions per pool.
  std::map<std::string, std::size_t> per_pool() const;
  std::uint64_t created_total() const;
  std::uint64_t expired_total() const;

  /// When a session made at `created`, last used at `last_used`, expires unless used again.
  static session_clock::time_point expiry(session_clock::time_point created,
                                          session_clock::time_point last_used,
                                          std::chrono::milliseconds idle_ttl,
                                          std::chrono::milliseconds max_lifetime);

private:
  void bury(const std::string& id, const std::string& reason);  // mu_ held

  mutable std::mutex mu_;
  std::size_t max_;
  std::map<std::string, std::shared_ptr<session>> open_;
  std::map<std::string, std::string> tombstones_;
  std::deque<std::string> tombstone_order_;
  std::uint64_t created_ = 0;
  std::uint64_t expired_ = 0;
};

/// 128 random bits as 32 hex digits, prefixed "s-".
std::string new_session_id();

} // namespace pyvisor::gateway
