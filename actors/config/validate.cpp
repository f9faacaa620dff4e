// Range and value rules of runtime_spec (validate(), and the loader through validate_into).
// Paths are TOML keys; the tree rules (names, references, children, cycles) are in
// validate_tree.cpp.
#include <filesystem>
#include <sstream>

#include "config/config_detail.hpp"
#include "config/validate_detail.hpp"

namespace pyvisor::config_detail {

using std::chrono::milliseconds;

void rule_checker::at_least(const std::string& path, std::uint64_t value, std::uint64_t min) {
  if (value < min)
    out.add(path, "must be at least " + std::to_string(min) + ", got " + std::to_string(value));
}

void rule_checker::positive(const std::string& path, milliseconds d) {
  if (d.count() <= 0)
    out.add(path, "must be positive, got " + format_duration(d));
}

void rule_checker::not_negative(const std::string& path, milliseconds d) {
  if (d.count() < 0)
    out.add(path, "must not be negative, got " + format_duration(d));
}

void rule_checker::absolute(const std::string& path, const std::string& p) {
  if (!p.empty() && !std::filesystem::path{p}.is_absolute())
    out.add(path, "must be an absolute path, got " + toml_string(p));
}

void rule_checker::not_empty(const std::string& path, const std::string& s) {
  if (s.empty())
    out.add(path, "must not be empty");
}

void rule_checker::backoff(const std::string& path, const backoff_policy& b) {
  not_negative(join(path, "base"), b.base);
  not_negative(join(path, "cap"), b.cap);
  if (b.cap < b.base)
    out.add(join(path, "cap"), "cap (" + format_duration(b.cap) + ") must not be below base (" +
                                 format_duration(b.base) + ")");
  if (!(b.jitter >= 0 && b.jitter < 1)) {
    std::ostringstream v;
    v << b.jitter;
    out.add(join(path, "jitter"), "must be at least 0 and below 1, got " + v.str());
  }
  not_negative(join(path, "reset_after"), b.reset_after);
}

void rule_checker::supervision(const std::string& path, std::optional<int> intensity,
                               std::optional<milliseconds> period) {
  if (intensity && *intensity < 0)
    out.add(join(path, "intensity"), "must be at least 0, got " + std::to_string(*intensity));
  if (period)
    positive(join(path, "period"), *period);
}

namespace {

constexpr std::uint64_t min_memory = std::uint64_t{1} << 20;

bool valid_variable(const std::string& name) {
  return !name.empty() && name.find('=') == std::string::npos &&
         name.find('\0') == std::string::npos;
}

bool valid_syscall(const std::string& name) {
  if (name.empty())
    return false;
  for (char c : name)
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  return true;
}

bool valid_module(const std::string& name) {
  bool start = true;
  for (char c : name) {
    bool letter = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    bool digit = c >= '0' && c <= '9';
    if (c == '.') {
      if (start)
        return false;
      start = true;
    } else if (letter || (digit && !start)) {
      start = false;
    } else {
      return false;
    }
  }
  return !name.empty() && !start;
}

void check_python_version(rule_checker& c, const std::string& path, const std::string& v) {
  if (v.empty())
    return;
  auto dot = v.find('.');
  auto digits = [](std::string_view s) {
    return !s.empty() && s.size() <= 4 && s.find_first_not_of("0123456789") == s.npos;
  };
  if (dot == std::string::npos || !digits(std::string_view{v}.substr(0, dot)) ||
      !digits(std::string_view{v}.substr(dot + 1))) {
    c.out.add(path, "invalid python_version " + toml_string(v) + ": expected \"MAJOR.MINOR\" like "
                                                            "\"3.11\"");
    return;
  }
  int major = std::stoi(v.substr(0, dot));
  int minor = std::stoi(v.substr(dot + 1));
  if (major != 3 || minor < 8)
    c.out.add(path, "python_version " + toml_string(v) + " is not supported (3.8 or newer)");
}

void check_tenant(rule_checker& c, const std::string& t, const tenant_spec& spec) {
  c.not_empty(join(t, "python"), spec.python);
  check_python_version(c, join(t, "python_version"), spec.python_version);
  if (spec.host_functions)
    for (std::size_t i = 0; i < spec.host_functions->size(); ++i)
      c.not_empty(index(join(t, "host_functions"), i), (*spec.host_functions)[i]);
  if (spec.venv) {
    const auto v = join(t, "venv");
    if (spec.venv->path.empty())
      c.out.add(join(v, "path"), "a venv needs a path");
    c.absolute(join(v, "path"), spec.venv->path);
    c.not_empty(join(v, "python"), spec.venv->python);
    for (std::size_t i = 0; i < spec.venv->requirements.size(); ++i)
      c.not_empty(index(join(v, "requirements"), i), spec.venv->requirements[i]);
  }
  const auto env = join(t, "environment");
  for (std::size_t i = 0; i < spec.environment.inherit.size(); ++i)
    if (!valid_variable(spec.environment.inherit[i]))
      c.out.add(index(join(env, "inherit"), i),
                "invalid variable name " + toml_string(spec.environment.inherit[i]));
  const auto& set = spec.environment.set;
  for (std::size_t i = 0; i < set.size(); ++i) {
    const auto path = join(join(env, "set"), set[i].first);
    if (!valid_variable(set[i].first))
      c.out.add(path, "invalid variable name " + toml_string(set[i].first));
    for (std::size_t j = 0; j < i; ++j)
      if (set[j].first == set[i].first)
        c.out.add(path, "variable '" + set[i].first + "' is set twice");
  }
  const auto l = join(t, "limits");
  if (spec.limits.memory && *spec.limits.memory < min_memory)
    c.out.add(join(l, "memory"), "must be at least 1MiB, got " + format_size(*spec.limits.memory));
  if (spec.limits.cpu_seconds)
    c.at_least(join(l, "cpu_seconds"), *spec.limits.cpu_seconds, 1);
  if (spec.limits.open_files)
    c.at_least(join(l, "open_files"), *spec.limits.open_files, 16);
  if (spec.limits.processes)
    c.at_least(join(l, "processes"), *spec.limits.processes, 1);
  const auto& sb = spec.sandbox;
  c.absolute(join(t, "work_dir"), sb.work_dir);
  for (std::size_t i = 0; i < sb.read_only.size(); ++i) {
    c.not_empty(index(join(t, "read_only"), i), sb.read_only[i]);
    c.absolute(index(join(t, "read_only"), i), sb.read_only[i]);
  }
  if (sb.kind != sandbox_kind::bwrap) {
    if (!sb.work_dir.empty())
      c.out.add(join(t, "work_dir"), "work_dir needs sandbox = \"bwrap\"");
    if (!sb.read_only.empty())
      c.out.add(join(t, "read_only"), "read_only needs sandbox = \"bwrap\"");
  }
  if (!sb.deny.empty() && !sb.seccomp)
    c.out.add(join(t, "seccomp_deny"), "seccomp_deny needs seccomp = true");
  for (std::size_t i = 0; i < sb.deny.size(); ++i)
    if (!valid_syscall(sb.deny[i]))
      c.out.add(index(join(t, "seccomp_deny"), i), "invalid syscall name " + toml_string(sb.deny[i]));
}

void check_workers(rule_checker& c, const std::string& p, const pool_options& o) {
  c.at_least(join(p, "size"), o.workers, 1);
  const auto& a = o.autoscale;
  if (a.min_workers != 0 || a.max_workers != 0) {
    if (a.max_workers == 0)
      c.out.add(join(p, "max"), "must be at least 1, got 0");
    else if (a.max_workers < a.min_workers)
      c.out.add(join(p, "max"), "max (" + std::to_string(a.max_workers) +
                                  ") must not be below min (" + std::to_string(a.min_workers) + ")");
    else if (o.workers >= 1 && (o.workers < a.min_workers || o.workers > a.max_workers))
      c.out.add(join(p, "size"), "size (" + std::to_string(o.workers) + ") must lie within min (" +
                                   std::to_string(a.min_workers) + ") and max (" +
                                   std::to_string(a.max_workers) + ")");
  }
  if (o.min_ready && *o.min_ready > o.workers)
    c.out.add(join(p, "min_ready"), "min_ready (" + std::to_string(*o.min_ready) +
                                      ") must not exceed the worker count (" +
                                      std::to_string(o.workers) + ")");
}

void check_pool_options(rule_checker& c, const std::string& p, const pool_options& o) {
  const auto& w = o.worker;
  check_workers(c, p, o);
  c.at_least(join(p, "max_inflight_per_worker"), o.max_inflight_per_worker, 1);
  if (o.queue_timeout)
    c.positive(join(p, "queue_timeout"), *o.queue_timeout);
  c.positive(join(p, "default_timeout"), w.default_timeout);
  c.positive(join(p, "init_timeout"), w.init_script_timeout);
  const auto& busy = w.busy_limits;
  if (!busy.disabled) {
    c.at_least(join(join(p, "busy"), "high_water"), busy.high_water, 1);
    c.at_least(join(join(p, "busy"), "max_inflight"), busy.max_inflight, 1);
    if (busy.low_water > busy.high_water)
      c.out.add(join(join(p, "busy"), "low_water"), "low_water (" + format_size(busy.low_water) +
                                             ") must not exceed high_water (" +
                                             format_size(busy.high_water) + ")");
  }
  c.positive(join(join(p, "time_limits"), "soft"), o.limits.soft);
  c.positive(join(join(p, "time_limits"), "hard"), o.limits.hard);
  if (o.limits.soft != forever && o.limits.hard != forever && o.limits.soft.count() > 0 &&
      o.limits.hard <= o.limits.soft)
    c.out.add(join(join(p, "time_limits"), "hard"), "hard (" + format_duration(o.limits.hard) +
                                             ") must be above soft (" +
                                             format_duration(o.limits.soft) + ")");
  c.not_negative(join(join(p, "recycle"), "rss_check_interval"), o.recycle.rss_check_interval);
  c.positive(join(join(p, "recycle"), "max_idle"), o.recycle.max_idle);
  if (o.heartbeat.interval != forever) {
    c.positive(join(join(p, "heartbeat"), "interval"), o.heartbeat.interval);
    c.positive(join(join(p, "heartbeat"), "timeout"), o.heartbeat.timeout);
  }
  c.backoff(join(p, "backoff"), o.backoff);
  c.at_least(join(join(p, "breaker"), "max_failures"), o.breaker.max_failures, 1);
  c.positive(join(join(p, "breaker"), "reset_timeout"), o.breaker.reset_timeout);
  if (o.breaker.max_reset_timeout < o.breaker.reset_timeout)
    c.out.add(join(join(p, "breaker"), "max_reset_timeout"),
              "max_reset_timeout (" + format_duration(o.breaker.max_reset_timeout) +
                ") must not be below reset_timeout (" + format_duration(o.breaker.reset_timeout) +
                ")");
  if (!(o.autoscale.inflight_per_worker > 0)) {
    std::ostringstream v;
    v << o.autoscale.inflight_per_worker;
    c.out.add(join(join(p, "autoscale"), "inflight_per_worker"), "must be positive, got " + v.str());
  }
  c.not_negative(join(join(p, "autoscale"), "up_window"), o.autoscale.up_window);
  c.positive(join(join(p, "autoscale"), "idle_timeout"), o.autoscale.idle_timeout);
  c.positive(join(join(p, "autoscale"), "check_interval"), o.autoscale.check_interval);
  c.not_negative(join(join(p, "shutdown"), "graceful"), w.shutdown.graceful);
  c.not_negative(join(join(p, "shutdown"), "terminate"), w.shutdown.terminate);
  c.not_negative(join(join(p, "interrupt"), "grace"), w.interrupt.grace);
  c.not_negative(join(join(p, "interrupt"), "kill_after"), w.interrupt.kill_after);
}

void check_pool(rule_checker& c, const std::string& p, const pool_spec& spec) {
  check_pool_options(c, p, spec.options);
  if (!spec.init_file.empty()) {
    const auto f = join(p, "init_file");
    std::error_code ec;
    auto status = std::filesystem::status(spec.init_file, ec);
    if (!spec.options.worker.init_script.code.empty())
      c.out.add(f, "init_file and init_script exclude each other: use one");
    if (!std::filesystem::exists(status))
      c.out.add(f, "init_file " + toml_string(spec.init_file) + " does not exist");
    else if (!std::filesystem::is_regular_file(status))
      c.out.add(f, "init_file " + toml_string(spec.init_file) + " is not a regular file");
  }
  for (std::size_t i = 0; i < spec.preload.size(); ++i)
    if (!valid_module(spec.preload[i]))
      c.out.add(index(join(p, "preload"), i), "invalid module name " + toml_string(spec.preload[i]));
  if (spec.memory_budget && *spec.memory_budget < min_memory)
    c.out.add(join(p, "memory_budget"),
              "must be at least 1MiB, got " + format_size(*spec.memory_budget));
  const auto envs = join(p, "envs");
  for (std::size_t i = 0; i < spec.envs.size(); ++i) {
    const auto name = join(index(envs, i), "name");
    if (spec.envs[i].name.empty()) {
      c.out.add(name, "an env needs a name");
      continue;
    }
    for (std::size_t j = 0; j < i; ++j)
      if (spec.envs[j].name == spec.envs[i].name) {
        c.out.add(name, "env '" + spec.envs[i].name + "' is declared twice");
        break;
      }
  }
}

void check_gateway(rule_checker& c, const runtime_spec& spec) {
  const auto& g = spec.gateway;
  c.positive("runtime.shutdown_grace", spec.runtime.shutdown_grace);
  if (!spec.runtime.http_listen.empty()) {
    auto a = parse_listen_address(spec.runtime.http_listen);
    if (!a) {
      c.out.add("runtime.http_listen", a.error().message);
    } else if (!a->loopback() && g.tokens_file.empty()) {
      c.out.add("runtime.http_listen",
                "listening on " + a->host +
                    " (not a loopback address) requires authentication: set gateway.tokens_file");
    }
  }
  if (g.tls_cert.empty() != g.tls_key.empty())
    c.out.add(g.tls_cert.empty() ? "gateway.tls_key" : "gateway.tls_cert",
              "tls_cert and tls_key go together: set both or neither");
  c.at_least("gateway.max_body", g.max_body, 1024);
  c.at_least("gateway.max_connections", g.max_connections, 1);
  c.at_least("gateway.max_sessions", g.max_sessions, 1);
  c.positive("gateway.read_timeout", g.read_timeout);
  c.positive("gateway.write_timeout", g.write_timeout);
  c.positive("gateway.idle_timeout", g.idle_timeout);
  c.positive("gateway.session_idle_ttl", g.session_idle_ttl);
  c.positive("gateway.session_max_lifetime", g.session_max_lifetime);
}

} // namespace

void check_settings(rule_checker& c, const runtime_spec& spec) {
  if (!choice_index(spec.runtime.log_level, log_level_names()))
    c.out.add("runtime.log_level", bad_choice(spec.runtime.log_level, log_level_names()));
  if (!choice_index(spec.runtime.log_format, log_format_names()))
    c.out.add("runtime.log_format", bad_choice(spec.runtime.log_format, log_format_names()));
  check_gateway(c, spec);
  c.supervision("supervisor", spec.supervisor.intensity, spec.supervisor.period);
  c.backoff("supervisor.backoff", spec.supervisor.backoff);
  for (const auto& t : spec.tenants)
    check_tenant(c, join("tenants", t.name), t);
  for (const auto& p : spec.pools)
    check_pool(c, join("pools", p.options.name), p);
  for (const auto& s : spec.supervisors) {
    const auto path = join("supervisors", s.name);
    c.supervision(path, s.intensity, s.period);
    if (s.backoff)
      c.backoff(join(path, "backoff"), *s.backoff);
  }
}

} // namespace pyvisor::config_detail
