// to_toml: a runtime_spec as the TOML load_config_string reads back into an equal spec. Keys
// come in the order of config/pyvisor.toml; only values that differ from the defaults unless
// `all` (unset optionals have no TOML spelling and are left out either way).
#include <algorithm>
#include <charconv>
#include <string>
#include <vector>

#include "config/config_detail.hpp"

namespace pyvisor {
namespace config_detail {
namespace {

using std::chrono::milliseconds;

bool literal_safe(const std::string& s) {
  if (s.find('\n') == std::string::npos || s.find("'''") != std::string::npos ||
      s.back() == '\'')
    return false;
  for (char ch : s) {
    auto c = static_cast<unsigned char>(ch);
    if ((c < 0x20 && c != '\n' && c != '\t') || c == 0x7f)
      return false;
  }
  return true;
}

/// Multi-line code reads best as a literal string; anything else is a basic string.
std::string string_value(const std::string& s) {
  return literal_safe(s) ? "'''\n" + s + "'''" : toml_string(s);
}

std::string float_value(double d) {
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  std::string s{buf, ec == std::errc{} ? end : buf};
  if (s.find_first_of(".eEn") == std::string::npos)  // "1" -> "1.0"; inf and nan stay
    s += ".0";
  return s;
}

std::string strings_value(const std::vector<std::string>& v) {
  std::string out = "[";
  for (std::size_t i = 0; i < v.size(); ++i)
    out += (i ? ", " : "") + toml_string(v[i]);
  return out + "]";
}

/// One [section]: its key lines, written with the header when there is any (or `force`).
class section {
public:
  section(std::string header, bool all, bool array = false)
    : header_(std::move(header)), all_(all), array_(array) {}

  void raw(const std::string& key, std::string value) {
    lines_ += toml_key(key) + " = " + value + "\n";
  }
  template <class T>
  bool differs(const T& v, const T& def) const {
    return all_ || !(v == def);
  }
  void str(const std::string& key, const std::string& v, const std::string& def) {
    if (differs(v, def))
      raw(key, string_value(v));
  }
  void boolean(const std::string& key, bool v, bool def) {
    if (differs(v, def))
      raw(key, v ? "true" : "false");
  }
  template <class T>
  void integer(const std::string& key, T v, T def) {
    if (differs(v, def))
      raw(key, std::to_string(v));
  }
  void number(const std::string& key, double v, double def) {
    if (differs(v, def))
      raw(key, float_value(v));
  }
  void duration(const std::string& key, milliseconds v, milliseconds def) {
    if (differs(v, def))
      raw(key, toml_string(format_duration(v)));
  }
  void size(const std::string& key, std::uint64_t v, std::uint64_t def) {
    if (differs(v, def))
      raw(key, toml_string(format_size(v)));
  }
  void strings(const std::string& key, const std::vector<std::string>& v,
               const std::vector<std::string>& def) {
    if (differs(v, def))
      raw(key, strings_value(v));
  }

  void write(std::string& out, bool force = false) const {
    if (lines_.empty() && !force && !all_)
      return;
    if (!out.empty())
      out += "\n";
    out += (array_ ? "[[" : "[") + header_ + (array_ ? "]]\n" : "]\n") + lines_;
  }

private:
  std::string header_;
  bool all_;
  bool array_;
  std::string lines_;
};

void write_backoff(std::string& out, const std::string& header, const backoff_policy& b,
                   const backoff_policy& def, bool all, bool force) {
  section s{header, all};
  s.duration("base", b.base, def.base);
  s.duration("cap", b.cap, def.cap);
  s.number("jitter", b.jitter, def.jitter);
  s.duration("reset_after", b.reset_after, def.reset_after);
  s.write(out, force);
}

void write_tenant(std::string& out, const tenant_spec& t, bool all) {
  const tenant_spec def;
  const auto h = join("tenants", t.name);
  section s{h, all};
  s.str("python", t.python, def.python);
  s.str("python_version", t.python_version, def.python_version);
  if (t.host_functions)
    s.raw("host_functions", strings_value(*t.host_functions));
  s.str("user", t.identity.user, def.identity.user);
  s.str("group", t.identity.group, def.identity.group);
  if (s.differs(t.sandbox.kind, def.sandbox.kind))
    s.raw("sandbox", toml_string(name_of(t.sandbox.kind)));
  s.boolean("network", t.sandbox.network, def.sandbox.network);
  s.str("work_dir", t.sandbox.work_dir, def.sandbox.work_dir);
  s.strings("read_only", t.sandbox.read_only, def.sandbox.read_only);
  s.boolean("seccomp", t.sandbox.seccomp, def.sandbox.seccomp);
  s.strings("seccomp_deny", t.sandbox.deny, def.sandbox.deny);
  s.write(out, true);

  if (t.venv) {
    const venv_spec vdef;
    section v{join(h, "venv"), all};
    v.str("path", t.venv->path, vdef.path);
    v.str("python", t.venv->python, vdef.python);
    v.boolean("system_site_packages", t.venv->system_site_packages, vdef.system_site_packages);
    v.strings("requirements", t.venv->requirements, vdef.requirements);
    v.write(out, true);
  }
  section e{join(h, "environment"), all};
  e.strings("inherit", t.environment.inherit, def.environment.inherit);
  if (all || !t.environment.set.empty()) {
    std::string table = "{";
    for (std::size_t i = 0; i < t.environment.set.size(); ++i)
      table += (i ? ", " : " ") + toml_key(t.environment.set[i].first) + " = " +
               toml_string(t.environment.set[i].second);
    e.raw("set", table + (t.environment.set.empty() ? "}" : " }"));
  }
  e.write(out);

  section l{join(h, "limits"), all};
  const auto& lim = t.limits;
  auto opt_size = [&](const char* key, const std::optional<std::uint64_t>& v,
                      const std::optional<std::uint64_t>& d) {
    if (v && (all || v != d))
      l.raw(key, toml_string(format_size(*v)));
    else if (!v && d)
      l.raw(key, "\"inherit\"");
  };
  auto opt_int = [&](const char* key, const std::optional<std::uint64_t>& v) {
    if (v)
      l.raw(key, std::to_string(*v));
  };
  opt_size("memory", lim.memory, def.limits.memory);
  opt_int("cpu_seconds", lim.cpu_seconds);
  opt_int("open_files", lim.open_files);
  opt_size("file_size", lim.file_size, def.limits.file_size);
  opt_int("processes", lim.processes);
  opt_size("core", lim.core, def.limits.core);
  l.write(out);
}

void write_pool_keys(section& s, const pool_spec& p, const pool_spec& def, bool all) {
  const auto& o = p.options;
  const auto& w = o.worker;
  s.str("tenant", p.tenant, def.tenant);
  const auto& a = o.autoscale;
  if (a.min_workers != 0 || a.max_workers != 0) {
    s.raw("min", std::to_string(a.min_workers));
    s.raw("max", std::to_string(a.max_workers));
    s.integer<std::size_t>("size", o.workers, std::max<std::size_t>(a.min_workers, 1));
  } else {
    s.integer("size", o.workers, def.options.workers);
  }
  if (o.min_ready)
    s.raw("min_ready", std::to_string(*o.min_ready));
  if (s.differs(o.dispatch, def.options.dispatch))
    s.raw("dispatch", toml_string(name_of(o.dispatch)));
  s.str("init_script", w.init_script.code, def.options.worker.init_script.code);
  s.str("init_file", p.init_file, def.init_file);
  s.strings("preload", p.preload, def.preload);
  if (s.differs(w.spawn, def.options.worker.spawn))
    s.raw("spawn", toml_string(name_of(w.spawn)));
  s.strings("python_args", w.args, def.options.worker.args);
  s.boolean("python_logging", w.forward_logging, def.options.worker.forward_logging);
  s.duration("default_timeout", w.default_timeout, def.options.worker.default_timeout);
  s.duration("init_timeout", w.init_script_timeout, def.options.worker.init_script_timeout);
  if (o.queue_timeout)
    s.raw("queue_timeout", toml_string(format_duration(*o.queue_timeout)));
  s.integer("max_inflight_per_worker", o.max_inflight_per_worker,
            def.options.max_inflight_per_worker);
  s.integer("max_queued", o.max_queued, def.options.max_queued);
  if (p.memory_budget)
    s.raw("memory_budget", toml_string(format_size(*p.memory_budget)));
  if (s.differs(p.restart, def.restart))
    s.raw("restart", toml_string(name_of(p.restart)));
  (void)all;
}

void write_pool(std::string& out, const pool_spec& p, bool all) {
  const pool_spec def;
  const auto& o = p.options;
  const auto& d = def.options;
  const auto& w = o.worker;
  const auto& dw = d.worker;
  const auto h = join("pools", o.name);
  section s{h, all};
  write_pool_keys(s, p, def, all);
  s.write(out, true);

  section busy{join(h, "busy"), all};
  busy.size("high_water", w.busy_limits.high_water, dw.busy_limits.high_water);
  busy.size("low_water", w.busy_limits.low_water, dw.busy_limits.low_water);
  busy.integer("max_inflight", w.busy_limits.max_inflight, dw.busy_limits.max_inflight);
  busy.integer("max_queued", w.busy_limits.max_queued, dw.busy_limits.max_queued);
  busy.boolean("disabled", w.busy_limits.disabled, dw.busy_limits.disabled);
  busy.write(out);

  section tl{join(h, "time_limits"), all};
  tl.duration("soft", o.limits.soft, d.limits.soft);
  tl.duration("hard", o.limits.hard, d.limits.hard);
  tl.write(out);

  section rc{join(h, "recycle"), all};
  rc.integer("max_requests", o.recycle.max_requests, d.recycle.max_requests);
  rc.integer("max_requests_jitter", o.recycle.max_requests_jitter, d.recycle.max_requests_jitter);
  rc.size("max_rss", o.recycle.max_rss_bytes, d.recycle.max_rss_bytes);
  rc.duration("rss_check_interval", o.recycle.rss_check_interval, d.recycle.rss_check_interval);
  rc.duration("max_idle", o.recycle.max_idle, d.recycle.max_idle);
  rc.write(out);

  section hb{join(h, "heartbeat"), all};
  hb.duration("interval", o.heartbeat.interval, d.heartbeat.interval);
  hb.duration("timeout", o.heartbeat.timeout, d.heartbeat.timeout);
  hb.write(out);

  write_backoff(out, join(h, "backoff"), o.backoff, d.backoff, all, false);

  section br{join(h, "breaker"), all};
  br.integer("max_failures", o.breaker.max_failures, d.breaker.max_failures);
  br.duration("reset_timeout", o.breaker.reset_timeout, d.breaker.reset_timeout);
  br.duration("max_reset_timeout", o.breaker.max_reset_timeout, d.breaker.max_reset_timeout);
  br.write(out);

  section as{join(h, "autoscale"), all};
  as.number("inflight_per_worker", o.autoscale.inflight_per_worker,
            d.autoscale.inflight_per_worker);
  as.duration("up_window", o.autoscale.up_window, d.autoscale.up_window);
  as.duration("idle_timeout", o.autoscale.idle_timeout, d.autoscale.idle_timeout);
  as.duration("check_interval", o.autoscale.check_interval, d.autoscale.check_interval);
  as.write(out);

  section sd{join(h, "shutdown"), all};
  sd.duration("graceful", w.shutdown.graceful, dw.shutdown.graceful);
  sd.duration("terminate", w.shutdown.terminate, dw.shutdown.terminate);
  sd.write(out);

  section in{join(h, "interrupt"), all};
  in.duration("grace", w.interrupt.grace, dw.interrupt.grace);
  in.duration("kill_after", w.interrupt.kill_after, dw.interrupt.kill_after);
  in.write(out);

  for (const auto& e : p.envs) {
    section env{join(h, "envs"), all, true};
    env.raw("name", toml_string(e.name));
    env.str("init", e.init, {});
    env.str("key", e.key, {});
    env.write(out, true);
  }
}

void write_supervisor_node(std::string& out, const supervisor_node& n,
                           const supervisor_defaults& defaults, bool all) {
  const auto h = join("supervisors", n.name);
  section s{h, all};
  if (n.strategy)
    s.raw("strategy", toml_string(name_of(*n.strategy)));
  if (n.intensity)
    s.raw("intensity", std::to_string(*n.intensity));
  if (n.period)
    s.raw("period", toml_string(format_duration(*n.period)));
  s.raw("children", strings_value(n.children));
  s.write(out, true);
  // The loader starts a node's backoff table from [supervisor.backoff].
  if (n.backoff)
    write_backoff(out, join(h, "backoff"), *n.backoff, defaults.backoff, all, true);
}

} // namespace
} // namespace config_detail

std::string to_toml(const runtime_spec& spec, bool all) {
  using namespace config_detail;
  std::string out;
  const runtime_spec def;

  section rt{"runtime", all};
  rt.integer("threads", spec.runtime.threads, def.runtime.threads);
  rt.str("log_level", spec.runtime.log_level, def.runtime.log_level);
  rt.str("log_format", spec.runtime.log_format, def.runtime.log_format);
  rt.str("http_listen", spec.runtime.http_listen, def.runtime.http_listen);
  rt.duration("shutdown_grace", spec.runtime.shutdown_grace, def.runtime.shutdown_grace);
  rt.write(out);

  section gw{"gateway", all};
  const auto& g = spec.gateway;
  const auto& dg = def.gateway;
  gw.str("tokens_file", g.tokens_file, dg.tokens_file);
  gw.str("tls_cert", g.tls_cert, dg.tls_cert);
  gw.str("tls_key", g.tls_key, dg.tls_key);
  gw.size("max_body", g.max_body, dg.max_body);
  gw.integer("max_connections", g.max_connections, dg.max_connections);
  gw.duration("read_timeout", g.read_timeout, dg.read_timeout);
  gw.duration("write_timeout", g.write_timeout, dg.write_timeout);
  gw.duration("idle_timeout", g.idle_timeout, dg.idle_timeout);
  gw.duration("session_idle_ttl", g.session_idle_ttl, dg.session_idle_ttl);
  gw.duration("session_max_lifetime", g.session_max_lifetime, dg.session_max_lifetime);
  gw.integer("max_sessions", g.max_sessions, dg.max_sessions);
  gw.write(out);

  section sv{"supervisor", all};
  if (sv.differs(spec.supervisor.strategy, def.supervisor.strategy))
    sv.raw("strategy", toml_string(name_of(spec.supervisor.strategy)));
  sv.integer("intensity", spec.supervisor.intensity, def.supervisor.intensity);
  sv.duration("period", spec.supervisor.period, def.supervisor.period);
  sv.write(out);
  write_backoff(out, "supervisor.backoff", spec.supervisor.backoff, def.supervisor.backoff, all,
                false);

  for (const auto& t : spec.tenants)
    write_tenant(out, t, all);
  for (const auto& p : spec.pools)
    write_pool(out, p, all);
  for (const auto& n : spec.supervisors)
    write_supervisor_node(out, n, spec.supervisor, all);
  return out;
}

} // namespace pyvisor
