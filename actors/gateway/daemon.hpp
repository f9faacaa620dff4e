#pragma once

// `pyvisor serve CONFIG`: the long-running daemon (docs/http.md). It deploys the config's tree,
// serves it over the HTTP gateway, logs every lifecycle event, reloads on SIGHUP and stops on
// SIGTERM/SIGINT after the requests in flight finished (within [runtime] shutdown_grace).

#include <atomic>
#include <cstdio>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "gateway/deploy_units.hpp"
#include "gateway/event_log.hpp"
#include "gateway/http_gateway.hpp"
#include "pyvisor/deployment.hpp"
#include "pyvisor/runtime.hpp"

namespace pyvisor::gateway {

struct daemon_options {
  std::string config_path;
  std::FILE* out = stdout;  ///< the ready line
  std::FILE* log = stderr;  ///< the log
};

class daemon {
public:
  explicit daemon(daemon_options o);
  ~daemon();

  /// Blocks SIGTERM, SIGINT and SIGHUP in the calling thread (call before any thread starts:
  /// threads inherit the mask, so only run() receives them).
  static void block_signals();

  /// Loads, deploys, serves; returns the exit status: 0 after SIGTERM/SIGINT, 1 when the
  /// config is invalid or the tree cannot start (the reasons on the log).
  int run();

  /// The status document (GET /v1/status without the gateway's part).
  json status() const;

private:
  struct running_unit {
    deploy_unit unit;
    std::optional<deployment> dep;
    std::uint64_t generation = 0;
  };

  expected<std::shared_ptr<running_unit>> start_unit(const deploy_unit& u);
  void publish_routes();
  void reload();
  void shutdown();

  daemon_options opts_;
  runtime_spec spec_;
  std::unique_ptr<event_log> log_;
  std::unique_ptr<pyvisor::runtime> rt_;
  std::unique_ptr<http_gateway> gateway_;
  mutable std::mutex mu_;
  std::vector<std::shared_ptr<running_unit>> units_;  // guarded by mu_
  std::shared_ptr<const pool_routes> routes_;          // guarded by mu_
  std::uint64_t next_generation_ = 1;
  std::atomic<std::uint64_t> reloads_{0};
  std::atomic<std::uint64_t> reload_failures_{0};
  std::chrono::system_clock::time_point started_wall_ = std::chrono::system_clock::now();
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

} // namespace pyvisor::gateway
