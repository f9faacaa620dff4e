// Reading [tenants.NAME] and [pools.NAME] (and backoff tables) into their structs. Only types
// are checked here; every range and reference rule is validate()'s (validate*.cpp).
#include <algorithm>

#include "config/reader.hpp"

namespace pyvisor::config_detail {

void read_backoff(table_reader& r, backoff_policy& out) {
  r.duration("base", out.base);
  r.duration("cap", out.cap);
  r.number("jitter", out.jitter);
  r.duration("reset_after", out.reset_after);
  r.finish();
}

namespace {

void read_venv(table_reader& r, venv_spec& v) {
  r.path("path", v.path);
  r.string("python", v.python);
  r.boolean("system_site_packages", v.system_site_packages);
  r.strings("requirements", v.requirements);
  r.finish();
}

void read_environment(table_reader& r, environment_policy& e) {
  r.strings("inherit", e.inherit);
  if (auto* n = r.get("set")) {
    auto* t = n->as_table();
    if (!t) {
      r.problem_at(*n, r.path_of("set"),
                   "expected a table of strings like { NAME = \"value\" }, got " +
                     std::string{type_name(*n)});
    } else {
      const auto base = r.path_of("set");
      for (auto&& [k, v] : *t) {
        const auto& b = v.source().begin;
        r.context().positions.record(join(base, k.str()), static_cast<int>(b.line),
                                     static_cast<int>(b.column));
        if (auto* s = v.as_string())
          e.set.emplace_back(std::string{k.str()}, s->get());
        else
          r.problem_at(v, join(base, k.str()),
                       "expected a string, got " + std::string{type_name(v)});
      }
    }
  }
  r.finish();
}

void read_limits(table_reader& r, resource_limits& l) {
  r.size("memory", l.memory, true);
  r.integer("cpu_seconds", l.cpu_seconds);
  r.integer("open_files", l.open_files);
  r.size("file_size", l.file_size, true);
  r.integer("processes", l.processes);
  r.size("core", l.core, true);
  r.finish();
}

} // namespace

void read_tenant(table_reader& r, tenant_spec& t) {
  r.string("python", t.python);
  r.string("python_version", t.python_version);
  r.strings("host_functions", t.host_functions);
  r.string("user", t.identity.user);
  r.string("group", t.identity.group);
  r.choice("sandbox", t.sandbox.kind, sandbox_names());
  r.boolean("network", t.sandbox.network);
  r.path("work_dir", t.sandbox.work_dir);
  r.strings("read_only", t.sandbox.read_only);
  r.boolean("seccomp", t.sandbox.seccomp);
  r.strings("seccomp_deny", t.sandbox.deny);
  if (auto v = r.table("venv")) {
    venv_spec venv;
    read_venv(*v, venv);
    t.venv = std::move(venv);
  }
  if (auto e = r.table("environment"))
    read_environment(*e, t.environment);
  if (auto l = r.table("limits"))
    read_limits(*l, t.limits);
  r.finish();
}

namespace {

void read_workers(table_reader& r, pool_options& o) {
  const bool has_min = r.has("min");
  const bool has_max = r.has("max");
  r.integer("size", o.workers);
  r.integer("min", o.autoscale.min_workers);
  r.integer("max", o.autoscale.max_workers);
  if (has_min != has_max) {
    auto key = has_min ? "min" : "max";
    r.problem_at(*r.get(key), r.path_of(key),
                 has_min ? "min needs max (autoscaling takes both)"
                         : "max needs min (autoscaling takes both)");
    o.autoscale.min_workers = o.autoscale.max_workers = 0;  // no follow-up problems
  }
  // max = 0 has no spelling in the spec (0 there means "no autoscaling"): caught here, with
  // validate()'s wording for the same rule.
  if (has_min && has_max && o.autoscale.max_workers == 0 && r.get("max")->is_integer()) {
    r.problem_at(*r.get("max"), r.path_of("max"), "must be at least 1, got 0");
    o.autoscale.min_workers = 0;
  }
  if (has_min && has_max && !r.has("size"))
    o.workers = std::max<std::size_t>(o.autoscale.min_workers, 1);
}

void read_envs(table_reader& r, std::vector<durable_env_spec>& envs) {
  auto* a = r.array("envs");
  if (!a)
    return;
  const auto base = r.path_of("envs");
  for (std::size_t i = 0; i < a->size(); ++i) {
    const auto& node = *a->get(i);
    const auto& b = node.source().begin;
    r.context().positions.record(index(base, i), static_cast<int>(b.line),
                                 static_cast<int>(b.column));
    auto* t = node.as_table();
    if (!t) {
      r.problem_at(node, index(base, i), "expected a table, got " + std::string{type_name(node)});
      continue;
    }
    table_reader er{r.context(), *t, index(base, i)};
    durable_env_spec e;
    er.string("name", e.name);
    er.string("init", e.init);
    er.string("key", e.key);
    er.finish();
    envs.push_back(std::move(e));
  }
}

} // namespace

void read_pool(table_reader& r, pool_spec& p) {
  auto& o = p.options;
  auto& w = o.worker;
  r.string("tenant", p.tenant);
  read_workers(r, o);
  r.integer("min_ready", o.min_ready);
  r.choice("dispatch", o.dispatch, dispatch_names());
  r.string("init_script", w.init_script.code);
  r.path("init_file", p.init_file);
  r.strings("preload", p.preload);
  r.choice("spawn", w.spawn, spawn_names());
  r.strings("python_args", w.args);
  r.boolean("python_logging", w.forward_logging);
  r.duration("default_timeout", w.default_timeout);
  r.duration("init_timeout", w.init_script_timeout);
  r.duration("queue_timeout", o.queue_timeout);
  r.integer("max_inflight_per_worker", o.max_inflight_per_worker);
  r.integer("max_queued", o.max_queued);
  r.size("memory_budget", p.memory_budget);
  r.choice("restart", p.restart, restart_names());
  if (auto t = r.table("busy")) {
    t->size("high_water", w.busy_limits.high_water);
    t->size("low_water", w.busy_limits.low_water);
    t->integer("max_inflight", w.busy_limits.max_inflight);
    t->integer("max_queued", w.busy_limits.max_queued);
    t->boolean("disabled", w.busy_limits.disabled);
    t->finish();
  }
  if (auto t = r.table("time_limits")) {
    t->duration("soft", o.limits.soft);
    t->duration("hard", o.limits.hard);
    t->finish();
  }
  if (auto t = r.table("recycle")) {
    t->integer("max_requests", o.recycle.max_requests);
    t->integer("max_requests_jitter", o.recycle.max_requests_jitter);
    t->size("max_rss", o.recycle.max_rss_bytes);
    t->duration("rss_check_interval", o.recycle.rss_check_interval);
    t->duration("max_idle", o.recycle.max_idle);
    t->finish();
  }
  if (auto t = r.table("heartbeat")) {
    t->duration("interval", o.heartbeat.interval);
    t->duration("timeout", o.heartbeat.timeout);
    t->finish();
  }
  if (auto t = r.table("backoff"))
    read_backoff(*t, o.backoff);
  if (auto t = r.table("breaker")) {
    t->integer("max_failures", o.breaker.max_failures);
    t->duration("reset_timeout", o.breaker.reset_timeout);
    t->duration("max_reset_timeout", o.breaker.max_reset_timeout);
    t->finish();
  }
  if (auto t = r.table("autoscale")) {
    t->number("inflight_per_worker", o.autoscale.inflight_per_worker);
    t->duration("up_window", o.autoscale.up_window);
    t->duration("idle_timeout", o.autoscale.idle_timeout);
    t->duration("check_interval", o.autoscale.check_interval);
    t->finish();
  }
  if (auto t = r.table("shutdown")) {
    t->duration("graceful", w.shutdown.graceful);
    t->duration("terminate", w.shutdown.terminate);
    t->finish();
  }
  if (auto t = r.table("interrupt")) {
    t->duration("grace", w.interrupt.grace);
    t->duration("kill_after", w.interrupt.kill_after);
    t->finish();
  }
  read_envs(r, p.envs);
  r.finish();
}

} // namespace pyvisor::config_detail
