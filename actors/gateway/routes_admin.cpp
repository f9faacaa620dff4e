// GET /v1/status, /metrics, /readyz, /v1/pools (docs/http.md).
#include <httplib.h>

#include "gateway/connection_queue.hpp"
#include "gateway/http_gateway.hpp"

namespace pyvisor::gateway {

void http_gateway::get_status(const httplib::Request& req, httplib::Response& res) {
  if (!authorized_admin(req, res))
    return;
  json doc = hooks_.status ? hooks_.status() : json::object();
  json gw = json::object();
  gw["url"] = url();
  gw["connections"] = connections_ ? connections_->open() : 0;
  gw["connections_refused"] = connections_ ? connections_->refused() : 0;
  gw["in_flight"] = in_flight_.load();
  gw["sessions"] = sessions_.size();
  json per_pool = json::object();
  for (auto& [pool, n] : sessions_.per_pool())
    per_pool[pool] = n;
  gw["sessions_by_pool"] = std::move(per_pool);
  doc["gateway"] = std::move(gw);
  res.set_header("Cache-Control", "no-store");
  send_json(res, 200, doc);
}

void http_gateway::get_metrics(const httplib::Request& req, httplib::Response& res) {
  if (!authorized_admin(req, res))
    return;
  scrape_input in;
  auto routes = hooks_.routes();
  for (auto& [name, r] : *routes) {
    pyvisor::pool p = r.pool;
    in.pools.push_back({name, r.tenant, p.stats()});
  }
  in.sessions_open = sessions_.per_pool();
  in.sessions_created = sessions_.created_total();
  in.sessions_expired = sessions_.expired_total();
  in.connections = connections_ ? connections_->open() : 0;
  in.connections_refused = connections_ ? connections_->refused() : 0;
  if (hooks_.reloads)
    std::tie(in.reloads, in.reload_failures) = hooks_.reloads();
  in.uptime_seconds =
    std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  res.status = 200;
  res.set_content(metrics_.render(in), "text/plain; version=0.0.4; charset=utf-8");
}

void http_gateway::get_ready(const httplib::Request&, httplib::Response& res) {
  // Read live from every pool (an actor round trip each), never cached: a pool that lost all
  // its workers turns this false at once.
  auto routes = hooks_.routes();
  bool ready = !routes->empty();
  json pools = json::object();
  for (auto& [name, r] : *routes) {
    pyvisor::pool p = r.pool;
    const auto st = p.stats();
    pools[name] = {{"ready", st.ready}, {"workers", st.workers}};
    if (st.ready == 0)
      ready = false;
  }
  send_json(res, ready ? 200 : 503, json{{"ready", ready}, {"pools", std::move(pools)}});
}

void http_gateway::get_pools(const httplib::Request& req, httplib::Response& res) {
  const std::string auth = req.get_header_value("Authorization");
  if (tokens_.enabled() && tokens_.authenticate(auth) == nullptr) {
    res.set_header("WWW-Authenticate", "Bearer");
    return send_error(res, 401, "unauthorized", "a valid 'Authorization: Bearer TOKEN' is required");
  }
  auto routes = hooks_.routes();
  json list = json::array();
  for (auto& [name, r] : *routes)
    if (tokens_.check_pool(auth, name, r.tenant) == token_table::verdict::allowed)
      list.push_back({{"name", name},
                      {"tenant", r.tenant.empty() ? json(nullptr) : json(r.tenant)},
                      {"path", r.path}});
  send_json(res, 200, json{{"pools", std::move(list)}});
}

} // namespace pyvisor::gateway
