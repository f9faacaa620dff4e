// daemon::status(): GET /v1/status's document (docs/http.md): the tree, tenants, pools and their
// workers, recent lifecycle events.
#include <unistd.h>

#include "gateway/daemon.hpp"

namespace pyvisor::gateway {

namespace {

json exit_doc(const std::optional<exit_report>& r) {
  if (!r)
    return nullptr;
  json d = json::object();
  d["kind"] = std::string(to_string(r->kind));
  d["code"] = r->code;
  d["signal"] = r->signal;
  d["error"] = r->reason.code == errc::none ? json(nullptr) : json(std::string(to_string(r->reason.code)));
  d["message"] = r->reason.message;
  return d;
}

json latency_doc(const latency_summary& l) {
  const auto ms = [](std::chrono::microseconds us) { return static_cast<double>(us.count()) / 1000.0; };
  return json{{"count", l.count}, {"p50_ms", ms(l.p50)}, {"p90_ms", ms(l.p90)},
              {"p99_ms", ms(l.p99)}, {"max_ms", ms(l.max)}};
}

json pool_doc(const pool_route& r, const pool_stats& st) {
  json d = json::object();
  d["name"] = r.name;
  d["path"] = r.path;
  d["tenant"] = r.tenant.empty() ? json(nullptr) : json(r.tenant);
  d["generation"] = r.generation;
  d["spawn"] = r.spawn;
  d["workers"] = st.workers;
  d["ready"] = st.ready;
  d["in_flight"] = st.in_flight;
  d["queued"] = st.queued;
  d["served"] = st.served;
  d["restarts"] = st.restarts;
  d["recycled"] = st.recycled;
  d["breaker_open"] = st.breaker_open;
  json errors = json::object();
  for (auto& [c, n] : st.errors)
    errors[std::string(to_string(c))] = n;
  d["errors"] = std::move(errors);
  d["latency"] = latency_doc(st.latency);
  json workers = json::array();
  for (auto& w : st.per_worker) {
    json wd = json::object();
    wd["id"] = w.id;
    wd["pid"] = w.pid;
    wd["state"] = std::string(to_string(w.state));
    wd["restarts"] = w.restarts;
    wd["last_exit"] = exit_doc(w.last_exit);
    wd["in_flight"] = w.in_flight;
    wd["queued"] = w.queued;
    wd["served"] = w.served;
    wd["errors"] = w.errors;
    wd["rss_bytes"] = w.rss_bytes;
    wd["busy_transitions"] = w.busy_transitions;
    wd["uptime_ms"] = w.uptime.count();
    workers.push_back(std::move(wd));
  }
  d["per_worker"] = std::move(workers);
  return d;
}

json tree_node(const runtime_spec& spec, const std::string& name) {
  for (auto& p : spec.pools)
    if (p.options.name == name)
      return json{{"name", name}, {"kind", "pool"}};
  for (auto& s : spec.supervisors)
    if (s.name == name) {
      json children = json::array();
      for (auto& c : s.children)
        children.push_back(tree_node(spec, c));
      return json{{"name", name}, {"kind", "supervisor"}, {"children", std::move(children)}};
    }
  return json{{"name", name}, {"kind", "unknown"}};
}

} // namespace

json daemon::status() const {
  std::shared_ptr<const pool_routes> routes;
  runtime_spec spec;
  {
    std::lock_guard<std::mutex> g{mu_};
    routes = routes_;
    spec = spec_;
  }
  json doc = json::object();
  doc["version"] = PYVISOR_VERSION;
  doc["pid"] = static_cast<int>(::getpid());
  doc["config"] = opts_.config_path;
  doc["uptime_s"] =
    std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
  doc["reloads"] = reloads_.load();
  bool ready = routes && !routes->empty();
  json pools = json::array();
  if (routes)
    for (auto& [name, r] : *routes) {
      pyvisor::pool p = r.pool;
      const auto st = p.stats();
      if (st.ready == 0)
        ready = false;
      pools.push_back(pool_doc(r, st));
    }
  doc["ready"] = ready;
  json children = json::array();
  for (auto& c : root_children(spec))
    children.push_back(tree_node(spec, c));
  doc["tree"] = json{{"name", "root"}, {"kind", "supervisor"}, {"children", std::move(children)}};
  json tenants = json::array();
  for (auto& t : spec.tenants) {
    json tp = json::array();
    for (auto& p : spec.pools)
      if (p.tenant == t.name)
        tp.push_back(p.options.name);
    tenants.push_back(json{{"name", t.name}, {"pools", std::move(tp)}});
  }
  doc["tenants"] = std::move(tenants);
  doc["pools"] = std::move(pools);
  doc["events"] = log_ ? log_->recent() : json::array();
  return doc;
}

} // namespace pyvisor::gateway
