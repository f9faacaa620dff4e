#pragma once

// The daemon's HTTP/JSON gateway (docs/http.md) on cpp-httplib: pools' eval and call, sessions,
// status, health, readiness, Prometheus metrics and the status page. It serves whatever pools
// the daemon publishes (routes()), so a reload swaps pools under it without a restart.

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>

#include "gateway/json_value.hpp"
#include "gateway/metrics.hpp"
#include "gateway/session_table.hpp"
#include "gateway/token_auth.hpp"
#include "pyvisor/config.hpp"
#include "pyvisor/expected.hpp"
#include "pyvisor/pool.hpp"
#include "pyvisor/runtime_spec.hpp"

namespace httplib {
class Server;
struct Request;
struct Response;
} // namespace httplib

namespace pyvisor::gateway {

class connection_queue;

/// A pool the gateway serves.
struct pool_route {
  std::string name;
  std::string tenant;  ///< "" when the pool has none
  std::string path;    ///< in the tree ("app/default")
  pyvisor::pool pool;
  std::uint64_t generation = 0;  ///< bumped when a reload replaces the pool
  std::string spawn = "cold";    ///< how its workers start: cold | fork_server
};
using pool_routes = std::map<std::string, pool_route, std::less<>>;

/// What the gateway asks the daemon.
struct gateway_hooks {
  /// The pools served now (the daemon swaps the map on reload).
  std::function<std::shared_ptr<const pool_routes>()> routes;
  /// GET /v1/status's document (the gateway adds its own part: sessions, connections).
  std::function<json()> status;
  /// Reload counters for /metrics: {ok, rejected}.
  std::function<std::pair<std::uint64_t, std::uint64_t>()> reloads;
};

class http_gateway {
public:
  /// Binds `listen` (a config_error when it cannot: address in use, bad TLS files, tokens file).
  /// Connections wait in the listening socket's backlog until serve().
  static expected<std::unique_ptr<http_gateway>> start(const listen_address& listen,
                                                       const gateway_settings& settings,
                                                       gateway_hooks hooks);
  ~http_gateway();

  /// Starts accepting and serving, on threads of its own (the hooks must answer from now on).
  void serve();
  /// The port it listens on (the chosen one when the config said 0).
  int port() const noexcept { return port_; }
  /// "http://127.0.0.1:4270" (https with TLS; IPv6 in brackets).
  std::string url() const;
  /// Closes the listening socket: no new connections; requests being served finish.
  void stop_accepting();
  /// Requests being handled now.
  std::size_t in_flight() const noexcept { return in_flight_.load(); }
  /// Waits until in_flight() is 0 or `bound` passed; returns whether it is 0.
  bool drain(std::chrono::milliseconds bound);
  /// stop_accepting(), then waits for every connection thread (each ends after its current
  /// request, or after idle_timeout when it waits for one).
  void stop();

  session_table& sessions() noexcept { return sessions_; }
  const gateway_metrics& metrics() const noexcept { return metrics_; }
  std::chrono::steady_clock::time_point started() const noexcept { return started_; }
  /// Ends the sessions of a pool that a reload removed or replaced.
  void pool_replaced(const std::string& pool, const std::string& reason);

private:
  http_gateway(const gateway_settings& settings, gateway_hooks hooks, token_table tokens);

  using handler = std::function<void(const httplib::Request&, httplib::Response&)>;
  void install_routes();
  void route_get(const char* pattern, handler h);
  void route_post(const char* pattern, handler h);
  void route_delete(const char* pattern, handler h);
  void route_patch(const char* pattern, handler h);
  handler wrap(handler h);

  // routes_pools.cpp
  void pool_call(const httplib::Request& req, httplib::Response& res, bool eval);
  // routes_sessions.cpp
  void session_create(const httplib::Request& req, httplib::Response& res);
  void session_call(const httplib::Request& req, httplib::Response& res, bool eval);
  void session_get(const httplib::Request& req, httplib::Response& res);
  void session_patch(const httplib::Request& req, httplib::Response& res);
  void session_delete(const httplib::Request& req, httplib::Response& res);
  void session_sweeper();
  // routes_admin.cpp
  void get_status(const httplib::Request& req, httplib::Response& res);
  void get_metrics(const httplib::Request& req, httplib::Response& res);
  void get_ready(const httplib::Request& req, httplib::Response& res);
  void get_pools(const httplib::Request& req, httplib::Response& res);

  /// The route of pool `name` if the request may use it; otherwise answers 401/403/404 and
  /// returns null.
  const pool_route* authorized_pool(const httplib::Request& req, httplib::Response& res,
                                    const pool_routes& routes, const std::string& name);
  /// Whether the request may use the admin endpoints; otherwise answers 401/403.
  bool authorized_admin(const httplib::Request& req, httplib::Response& res);

  gateway_settings settings_;
  gateway_hooks hooks_;
  token_table tokens_;
  bool tls_ = false;
  std::string host_;
  int port_ = 0;
  std::unique_ptr<httplib::Server> server_;
  connection_queue* connections_ = nullptr;  // owned by server_
  std::thread listener_;
  std::atomic<bool> listener_done_{false};
  std::thread sweeper_;
  std::mutex sweep_mu_;
  std::condition_variable sweep_cv_;
  bool stopping_ = false;
  std::atomic<std::size_t> in_flight_{0};
  session_table sessions_;
  gateway_metrics metrics_;
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
};

/// Writes `doc` as the JSON body with `status`.
void send_json(httplib::Response& res, int status, const json& doc);
/// Writes a gateway error ({"error": {...}}).
void send_error(httplib::Response& res, int status, std::string_view code, std::string_view message);

} // namespace pyvisor::gateway
