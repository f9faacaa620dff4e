#pragma once

// The daemon's log: every lifecycle event of the tree (pools' and supervisors', structured) and
// every line the runtime logs (Python output, pyvisor's own lines), written as text or JSON
// lines (`[runtime] log_format`) at or above `[runtime] log_level`, and a ring of recent
// lifecycle events for /v1/status and the status page.

#include <cstdint>
#include <cstdio>
#include <deque>
#include <mutex>
#include <set>
#include <string>

#include "gateway/json_value.hpp"
#include "pyvisor/log_record.hpp"
#include "pyvisor/pool_stats.hpp"
#include "pyvisor/supervision.hpp"

namespace pyvisor::gateway {

class event_log {
public:
  /// `format`: "text" or "json"; `level`: debug | info | warning | error.
  event_log(std::string format, std::string level, std::FILE* out = stderr);

  void set_format(std::string format, std::string level);

  /// A pool's lifecycle event (pool::subscribe).
  void pool_event(const pyvisor::pool_event& e);
  /// A supervisor's lifecycle event (supervisor::subscribe).
  void supervision_event(const pyvisor::supervision_event& e);
  /// The runtime's log sink. Lines about pool and supervisor events are dropped: those arrive
  /// structured through the two calls above (names registered with known_source()).
  void runtime_line(const log_record& r);
  /// A line of the daemon itself (ready, reload, shutdown), at `level`.
  void daemon(std::string_view level, std::string_view event, std::string_view message,
              json fields = json::object());

  /// Names whose runtime lines duplicate structured events (pools, supervisors).
  void known_source(const std::string& name);

  /// Recent lifecycle events, oldest first: [{"ts", "kind", "pool"/"supervisor", "worker",
  /// "pid", "message"}].
  json recent() const;
  std::uint64_t sequence() const;

private:
  void write(std::string_view level, json doc, const std::string& text);
  bool enabled(std::string_view level) const;
  void remember(json ev);

  mutable std::mutex mu_;
  std::string format_;
  int min_level_ = 1;
  std::FILE* out_;
  std::set<std::string, std::less<>> known_;
  std::deque<json> recent_;
  std::uint64_t seq_ = 0;
};

/// "2026-12-02T14:55:01.123Z".
std::string timestamp_now();

} // namespace pyvisor::gateway
