#include "gateway/event_log.hpp"

#include <chrono>
#include <ctime>

#include "pyvisor/deployment.hpp"

namespace pyvisor::gateway {

namespace {

constexpr std::size_t recent_max = 200;

int level_rank(std::string_view l) {
  if (l == "debug")
    return 0;
  if (l == "info")
    return 1;
  if (l == "warning")
    return 2;
  return 3;
}

const char* supervision_kind(supervision_event::kind_t k) {
  switch (k) {
    case supervision_event::started: return "child_started";
    case supervision_event::exited: return "child_exited";
    case supervision_event::restarting: return "child_restarting";
    case supervision_event::gave_up: return "gave_up";
    case supervision_event::stopped: return "supervisor_stopped";
  }
  return "unknown";
}

void add_report(json& doc, const exit_report& r) {
  doc["exit"] = std::string(to_string(r.kind));
  doc["exit_code"] = r.code;
  doc["signal"] = r.signal;
  if (r.reason.code != errc::none)
    doc["error"] = std::string(to_string(r.reason.code));
}

const char* pool_event_level(pyvisor::pool_event::kind_t k) {
  switch (k) {
    case pyvisor::pool_event::worker_exited:
    case pyvisor::pool_event::breaker_opened:
      return "warning";
    default:
      return "info";
  }
}

} // namespace

std::string timestamp_now() {
  const auto now = std::chrono::system_clock::now();
  const std::time_t tt = std::chrono::system_clock::to_time_t(now);
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()) % 1000;
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[40];
  const std::size_t n = std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%S", &tm);
  std::snprintf(buf + n, sizeof buf - n, ".%03dZ", static_cast<int>(ms.count()));
  return buf;
}

event_log::event_log(std::string format, std::string level, std::FILE* out) : out_(out) {
  set_format(std::move(format), std::move(level));
}

void event_log::set_format(std::string format, std::string level) {
  std::lock_guard<std::mutex> g{mu_};
  format_ = std::move(format);
  min_level_ = level_rank(level);
}

bool event_log::enabled(std::string_view level) const {
  return level_rank(level) >= min_level_;
}

void event_log::known_source(const std::string& name) {
  std::lock_guard<std::mutex> g{mu_};
  known_.insert(name);
}

void event_log::write(std::string_view level, json doc, const std::string& text) {
  // mu_ held by the caller.
  if (!enabled(level))
    return;
  std::string line;
  const std::string ts = timestamp_now();
  if (format_ == "json") {
    json out = json::object();
    out["ts"] = ts;
    out["level"] = std::string(level);
    for (auto& [k, v] : doc.items())
      out[k] = v;
    line = dump_json(out);
  } else {
    line = ts + " " + std::string(level) + " " + text;
  }
  line += '\n';
  std::fwrite(line.data(), 1, line.size(), out_);
  std::fflush(out_);
}

void event_log::remember(json ev) {
  ev["seq"] = ++seq_;
  ev["ts"] = timestamp_now();
  recent_.push_back(std::move(ev));
  while (recent_.size() > recent_max)
    recent_.pop_front();
}

void event_log::pool_event(const pyvisor::pool_event& e) {
  json doc = json::object();
  doc["event"] = std::string(to_string(e.kind));
  doc["pool"] = e.pool;
  if (!e.worker.empty())
    doc["worker"] = e.worker;
  if (e.pid != 0)
    doc["pid"] = e.pid;
  if (!e.reason.empty())
    doc["reason"] = e.reason;
  if (e.report)
    add_report(doc, *e.report);
  if (e.kind == pyvisor::pool_event::worker_restarting)
    doc["delay_ms"] = e.delay.count();
  const std::string text = e.to_string();
  doc["message"] = text;
  std::lock_guard<std::mutex> g{mu_};
  write(pool_event_level(e.kind), doc, text);
  json ev = {{"kind", to_string(e.kind)}, {"pool", e.pool}, {"worker", e.worker},
             {"pid", e.pid}, {"message", text}};
  remember(std::move(ev));
}

void event_log::supervision_event(const pyvisor::supervision_event& e) {
  json doc = json::object();
  doc["event"] = supervision_kind(e.kind);
  doc["supervisor"] = e.supervisor;
  if (!e.child.empty())
    doc["child"] = e.child;
  if (e.pid != 0)
    doc["pid"] = e.pid;
  if (e.kind == supervision_event::exited || e.kind == supervision_event::gave_up)
    add_report(doc, e.report);
  if (e.kind == supervision_event::restarting)
    doc["delay_ms"] = e.delay.count();
  const std::string text = e.to_string();
  doc["message"] = text;
  const bool bad = e.kind == supervision_event::exited && e.report.kind != exit_kind::shutdown &&
                   e.report.kind != exit_kind::normal;
  std::lock_guard<std::mutex> g{mu_};
  write(e.kind == supervision_event::gave_up ? "error" : bad ? "warning" : "info", doc, text);
  json ev = {{"kind", supervision_kind(e.kind)}, {"supervisor", e.supervisor},
             {"worker", e.child}, {"pid", e.pid}, {"message", text}};
  remember(std::move(ev));
}

void event_log::runtime_line(const log_record& r) {
  std::lock_guard<std::mutex> g{mu_};
  if (r.source == log_source::runtime && known_.count(r.label) != 0)
    return;  // a pool's or supervisor's event: written structured by the calls above
  static constexpr const char* names[] = {"debug", "info", "warning", "error"};
  const char* level = names[log_rank(r)];
  json doc = json::object();
  doc["source"] = std::string(to_string(r.source));
  doc["label"] = std::string(r.label);
  // Pool workers are labelled "<pool>-w<N>".
  if (const auto dash = r.label.rfind("-w"); dash != std::string_view::npos && dash > 0 &&
                                              dash + 2 < r.label.size()) {
    doc["pool"] = std::string(r.label.substr(0, dash));
    doc["worker"] = std::string(r.label.substr(dash + 1));
  }
  if (r.pid != 0)
    doc["pid"] = r.pid;
  if (r.request_id != 0)
    doc["request"] = r.request_id;
  std::string text = "[" + std::string(r.label) + " " + std::to_string(r.pid) + " " +
                     std::string(to_string(r.source));
  if (r.source == log_source::python_logging) {
    doc["python_level"] = std::string(r.level_name);
    doc["logger"] = std::string(r.logger);
    if (!r.exception.empty())
      doc["exception"] = std::string(r.exception);
    text += " " + std::string(r.level_name) + " " + std::string(r.logger);
  }
  doc["message"] = std::string(r.line);
  if (r.request_id != 0)
    text += " #" + std::to_string(r.request_id);
  text += "] ";
  text += r.line;
  if (!r.exception.empty()) {
    text += '\n';
    text += r.exception;
  }
  write(level, doc, text);
}

void event_log::daemon(std::string_view level, std::string_view event, std::string_view message,
                       json fields) {
  json doc = json::object();
  doc["event"] = std::string(event);
  for (auto& [k, v] : fields.items())
    doc[k] = v;
  doc["message"] = std::string(message);
  std::lock_guard<std::mutex> g{mu_};
  write(level, doc, "pyvisor: " + std::string(message));
  if (event == "reloaded" || event == "reload_rejected" || event == "stopping")
    remember(json{{"kind", std::string(event)}, {"message", std::string(message)}});
}

json event_log::recent() const {
  std::lock_guard<std::mutex> g{mu_};
  json out = json::array();
  for (auto& e : recent_)
    out.push_back(e);
  return out;
}

std::uint64_t event_log::sequence() const {
  std::lock_guard<std::mutex> g{mu_};
  return seq_;
}

} // namespace pyvisor::gateway
