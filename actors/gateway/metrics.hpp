#pragma once

// The gateway's counters and the Prometheus text exposition of GET /metrics (docs/http.md):
// request counts and latency histograms the gateway observes, plus the pools' own gauges and
// counters (pool_stats) and the sessions, read at scrape time.

#include <array>
#include <chrono>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "pyvisor/pool_stats.hpp"

namespace pyvisor::gateway {

/// Upper bounds (seconds) of the latency histogram's buckets (+Inf is implicit).
inline constexpr std::array<double, 16> latency_buckets{
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
  0.05,   0.1,     0.25,   0.5,   1.0,    2.5,   5.0,  10.0};

/// What a scrape reads besides the counters.
struct scrape_input {
  struct pool_entry {
    std::string name;
    std::string tenant;
    pool_stats stats;
  };
  std::vector<pool_entry> pools;
  std::map<std::string, std::size_t> sessions_open;  // per pool
  std::uint64_t sessions_created = 0;
  std::uint64_t sessions_expired = 0;
  std::size_t connections = 0;
  std::uint64_t connections_refused = 0;
  std::uint64_t reloads = 0;
  std::uint64_t reload_failures = 0;
  double uptime_seconds = 0;
};

class gateway_metrics {
public:
  /// One answered request of `pool` on `endpoint` ("eval", "call", "session_eval", ...) with
  /// outcome `code` ("ok" or an errc name) after `elapsed`.
  void observe(const std::string& pool, const char* endpoint, std::string_view code,
               std::chrono::nanoseconds elapsed);
  /// One HTTP response with `status`.
  void response(int status);

  std::string render(const scrape_input& in) const;

private:
  struct histogram {
    std::array<std::uint64_t, latency_buckets.size()> buckets{};  // non-cumulative
    std::uint64_t count = 0;
    double sum = 0;
  };
  struct pool_counters {
    // endpoint -> code -> count; keys are inserted once, then found without allocating.
    std::map<std::string, std::map<std::string, std::uint64_t, std::less<>>, std::less<>> requests;
    histogram latency;
  };
  mutable std::mutex mu_;
  std::map<std::string, pool_counters, std::less<>> pools_;
  std::map<int, std::uint64_t> responses_;
};

/// A Prometheus label value, escaped (\\, \", \n).
std::string label_value(std::string_view v);

} // namespace pyvisor::gateway
