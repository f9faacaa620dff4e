#include "gateway/metrics.hpp"

#include <cstdio>
#include <tuple>

namespace pyvisor::gateway {

namespace {

std::string num(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

struct writer {
  std::string out;
  void head(const char* name, const char* type, const char* help) {
    out += "# HELP ";
    out += name;
    out += ' ';
    out += help;
    out += "\n# TYPE ";
    out += name;
    out += ' ';
    out += type;
    out += '\n';
  }
  void sample(const std::string& name, const std::string& labels, const std::string& value) {
    out += name;
    if (!labels.empty()) {
      out += '{';
      out += labels;
      out += '}';
    }
    out += ' ';
    out += value;
    out += '\n';
  }
};

std::string pool_label(const std::string& pool) {
  return "pool=\"" + label_value(pool) + "\"";
}

} // namespace

std::string label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out += c;
  }
  return out;
}

void gateway_metrics::observe(const std::string& pool, const char* endpoint, std::string_view code,
                              std::chrono::nanoseconds elapsed) {
  const double s = std::chrono::duration<double>(elapsed).count();
  std::lock_guard<std::mutex> g{mu_};
  auto p = pools_.find(pool);
  if (p == pools_.end())
    p = pools_.emplace(pool, pool_counters{}).first;
  const std::string_view ep{endpoint};
  auto e = p->second.requests.find(ep);
  if (e == p->second.requests.end())
    e = p->second.requests.emplace(std::string{ep}, std::map<std::string, std::uint64_t, std::less<>>{})
          .first;
  auto c = e->second.find(code);
  if (c == e->second.end())
    c = e->second.emplace(std::string{code}, 0).first;
  ++c->second;
  auto& h = p->second.latency;
  std::size_t b = 0;
  while (b < latency_buckets.size() && s > latency_buckets[b])
    ++b;
  if (b < latency_buckets.size())
    ++h.buckets[b];
  ++h.count;
  h.sum += s;
}

void gateway_metrics::response(int status) {
  std::lock_guard<std::mutex> g{mu_};
  ++responses_[status];
}

std::string gateway_metrics::render(const scrape_input& in) const {
  writer w;
  {
    std::lock_guard<std::mutex> g{mu_};
    w.head("pyvisor_requests_total", "counter",
           "Requests answered through the gateway, by pool, endpoint and outcome (ok or an errc name).");
    for (auto& [pool, pc] : pools_)
      for (auto& [endpoint, codes] : pc.requests)
        for (auto& [code, n] : codes)
          w.sample("pyvisor_requests_total",
                   pool_label(pool) + ",endpoint=\"" + label_value(endpoint) + "\",code=\"" +
                     label_value(code) + "\"",
                   std::to_string(n));
    w.head("pyvisor_request_duration_seconds", "histogram",
           "Time from a request's arrival at the gateway to its answer, by pool.");
    for (auto& [pool, pc] : pools_) {
      const histogram& h = pc.latency;
      std::uint64_t cum = 0;
      for (std::size_t b = 0; b < latency_buckets.size(); ++b) {
        cum += h.buckets[b];
        w.sample("pyvisor_request_duration_seconds_bucket",
                 pool_label(pool) + ",le=\"" + num(latency_buckets[b]) + "\"", std::to_string(cum));
      }
      w.sample("pyvisor_request_duration_seconds_bucket", pool_label(pool) + ",le=\"+Inf\"",
               std::to_string(h.count));
      w.sample("pyvisor_request_duration_seconds_sum", pool_label(pool), num(h.sum));
      w.sample("pyvisor_request_duration_seconds_count", pool_label(pool), std::to_string(h.count));
    }
    w.head("pyvisor_http_responses_total", "counter", "HTTP responses by status code.");
    for (auto& [status, n] : responses_)
      w.sample("pyvisor_http_responses_total", "status=\"" + std::to_string(status) + "\"",
               std::to_string(n));
  }

  const auto per_pool = [&](const char* name, const char* type, const char* help, auto value) {
    w.head(name, type, help);
    for (auto& p : in.pools)
      w.sample(name, pool_label(p.name), value(p.stats));
  };
  per_pool("pyvisor_pool_workers", "gauge", "Workers of the pool (any state).",
           [](const pool_stats& s) { return std::to_string(s.workers); });
  per_pool("pyvisor_pool_ready_workers", "gauge", "Workers taking requests.",
           [](const pool_stats& s) { return std::to_string(s.ready); });
  per_pool("pyvisor_pool_in_flight", "gauge", "Requests sent to workers and not answered yet.",
           [](const pool_stats& s) { return std::to_string(s.in_flight); });
  per_pool("pyvisor_pool_queue_depth", "gauge", "Requests waiting in the pool queue.",
           [](const pool_stats& s) { return std::to_string(s.queued); });
  per_pool("pyvisor_pool_served_total", "counter", "Requests the pool answered (any caller).",
           [](const pool_stats& s) { return std::to_string(s.served); });
  per_pool("pyvisor_worker_restarts_total", "counter",
           "Worker processes started again after a crash.",
           [](const pool_stats& s) { return std::to_string(s.restarts); });
  per_pool("pyvisor_workers_recycled_total", "counter",
           "Workers replaced by recycling (requests, RSS, idle).",
           [](const pool_stats& s) { return std::to_string(s.recycled); });
  per_pool("pyvisor_pool_breaker_open", "gauge", "1 while the pool's start circuit breaker is open.",
           [](const pool_stats& s) { return std::string(s.breaker_open ? "1" : "0"); });

  w.head("pyvisor_pool_errors_total", "counter", "Answers that were errors, by pool and code.");
  for (auto& p : in.pools)
    for (auto& [code, n] : p.stats.errors)
      w.sample("pyvisor_pool_errors_total",
               pool_label(p.name) + ",code=\"" + std::string(to_string(code)) + "\"",
               std::to_string(n));

  w.head("pyvisor_worker_rss_bytes", "gauge", "Resident set size of each worker process.");
  for (auto& p : in.pools)
    for (auto& wk : p.stats.per_worker)
      w.sample("pyvisor_worker_rss_bytes",
               pool_label(p.name) + ",worker=\"" + label_value(wk.id) + "\"",
               std::to_string(wk.rss_bytes));
  w.head("pyvisor_worker_busy_transitions_total", "counter",
         "Times a worker became busy (backpressure: its write backlog or in-flight limit).");
  for (auto& p : in.pools)
    for (auto& wk : p.stats.per_worker)
      w.sample("pyvisor_worker_busy_transitions_total",
               pool_label(p.name) + ",worker=\"" + label_value(wk.id) + "\"",
               std::to_string(wk.busy_transitions));
  w.head("pyvisor_worker_restarts", "gauge", "Restarts of each current worker.");
  for (auto& p : in.pools)
    for (auto& wk : p.stats.per_worker)
      w.sample("pyvisor_worker_restarts",
               pool_label(p.name) + ",worker=\"" + label_value(wk.id) + "\"",
               std::to_string(wk.restarts));

  w.head("pyvisor_sessions_open", "gauge", "Open gateway sessions, by pool.");
  for (auto& p : in.pools) {
    auto i = in.sessions_open.find(p.name);
    w.sample("pyvisor_sessions_open", pool_label(p.name),
             std::to_string(i == in.sessions_open.end() ? 0 : i->second));
  }
  w.head("pyvisor_sessions_created_total", "counter", "Sessions made.");
  w.sample("pyvisor_sessions_created_total", "", std::to_string(in.sessions_created));
  w.head("pyvisor_sessions_expired_total", "counter", "Sessions ended by their idle TTL or lifetime.");
  w.sample("pyvisor_sessions_expired_total", "", std::to_string(in.sessions_expired));
  w.head("pyvisor_http_connections", "gauge", "Open HTTP connections.");
  w.sample("pyvisor_http_connections", "", std::to_string(in.connections));
  w.head("pyvisor_http_connections_refused_total", "counter",
         "Connections refused because max_connections were open.");
  w.sample("pyvisor_http_connections_refused_total", "", std::to_string(in.connections_refused));
  w.head("pyvisor_reloads_total", "counter", "Configuration reloads (SIGHUP), by result.");
  w.sample("pyvisor_reloads_total", "result=\"ok\"", std::to_string(in.reloads));
  w.sample("pyvisor_reloads_total", "result=\"rejected\"", std::to_string(in.reload_failures));
  w.head("pyvisor_uptime_seconds", "gauge", "Seconds since the daemon started.");
  w.sample("pyvisor_uptime_seconds", "", num(in.uptime_seconds));
  return std::move(w.out);
}

} // namespace pyvisor::gateway
