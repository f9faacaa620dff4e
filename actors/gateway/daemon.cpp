// The daemon's life: load, deploy every unit, serve, wait for signals, stop (docs/http.md).
#include "gateway/daemon.hpp"

#include <signal.h>

#include "pyvisor/config.hpp"

namespace pyvisor::gateway {

namespace {

void print_line(std::FILE* f, const std::string& line) {
  std::fwrite(line.data(), 1, line.size(), f);
  std::fputc('\n', f);
  std::fflush(f);
}

std::string tenant_of_pool(const runtime_spec& spec, const std::string& pool) {
  for (auto& p : spec.pools)
    if (p.options.name == pool)
      return p.tenant;
  return {};
}

std::string spawn_of_pool(const runtime_spec& spec, const std::string& pool) {
  for (auto& p : spec.pools)
    if (p.options.name == pool && p.options.worker.spawn == spawn_mode::fork_server)
      return "fork_server";
  return "cold";
}

} // namespace

daemon::daemon(daemon_options o) : opts_(std::move(o)) {
}

daemon::~daemon() {
  gateway_.reset();
  {
    std::lock_guard<std::mutex> g{mu_};
    units_.clear();
    routes_.reset();
  }
  rt_.reset();
}

void daemon::block_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

expected<std::shared_ptr<daemon::running_unit>> daemon::start_unit(const deploy_unit& u) {
  event_log* log = log_.get();
  // Their runtime text lines are dropped from now on: the events come structured (below).
  for (auto& name : u.pools)
    log->known_source(name);
  for (auto& s : u.spec.supervisors)
    log->known_source(s.name);
  log->known_source("root");
  auto d = rt_->deploy(u.spec);
  if (!d)
    return std::move(d).error();
  auto ru = std::make_shared<running_unit>();
  ru->unit = u;
  ru->dep = std::move(*d);
  ru->generation = next_generation_++;
  for (auto& name : u.pools) {
    auto p = ru->dep->find_pool(name);
    if (!p)
      continue;
    p->subscribe([log](const pool_event& e) { log->pool_event(e); });
    // The workers started during deploy, before this subscription: one event each, from the
    // pool's own record (a worker that already restarted shows its current pid).
    for (auto& w : p->stats().per_worker) {
      if (w.pid == 0)
        continue;
      pool_event e;
      e.kind = pool_event::worker_started;
      e.pool = name;
      e.worker = w.id;
      e.pid = w.pid;
      log->pool_event(e);
    }
  }
  ru->dep->root().subscribe([log](const supervision_event& e) { log->supervision_event(e); });
  return ru;
}

void daemon::publish_routes() {
  // mu_ held.
  auto routes = std::make_shared<pool_routes>();
  for (auto& u : units_)
    for (auto& name : u->unit.pools) {
      auto p = u->dep->find_pool(name);
      auto path = u->dep->path_of(name);
      if (!p || !path)
        continue;
      routes->emplace(name, pool_route{name, tenant_of_pool(u->unit.spec, name), *path, *p,
                                       u->generation, spawn_of_pool(u->unit.spec, name)});
    }
  routes_ = std::move(routes);
}

int daemon::run() {
  auto loaded = load_config(opts_.config_path);
  if (!loaded.ok()) {
    for (auto& p : loaded.problems)
      print_line(opts_.log, p.to_string());
    print_line(opts_.log, "pyvisor: " + opts_.config_path + ": " +
                            std::to_string(loaded.problems.size()) +
                            (loaded.problems.size() == 1 ? " problem" : " problems") +
                            "; not started");
    return 1;
  }
  spec_ = std::move(*loaded.spec);
  log_ = std::make_unique<event_log>(spec_.runtime.log_format, spec_.runtime.log_level, opts_.log);

  std::optional<listen_address> listen;
  if (!spec_.runtime.http_listen.empty()) {
    auto a = parse_listen_address(spec_.runtime.http_listen);
    if (!a) {
      log_->daemon("error", "start_failed", a.error().message);
      return 1;
    }
    listen = *a;
  }

  // The listener first: a port in use or unusable TLS files fail before any process starts.
  // Connections wait in its backlog until the tree is up.
  std::string where;
  if (listen) {
    gateway_hooks hooks;
    hooks.routes = [this] {
      std::lock_guard<std::mutex> g{mu_};
      return routes_;
    };
    hooks.status = [this] { return status(); };
    hooks.reloads = [this] { return std::make_pair(reloads_.load(), reload_failures_.load()); };
    auto gw = http_gateway::start(*listen, spec_.gateway, std::move(hooks));
    if (!gw) {
      log_->daemon("error", "start_failed", gw.error().message);
      return 1;
    }
    gateway_ = std::move(*gw);
    where = gateway_->url();
  }

  runtime_options ro = runtime_options_for(spec_.runtime);
  event_log* log = log_.get();
  ro.log = [log](const log_record& r) { log->runtime_line(r); };
  rt_ = std::make_unique<pyvisor::runtime>(std::move(ro));

  log_->daemon("info", "starting", "starting " + opts_.config_path,
               json{{"config", opts_.config_path}});
  for (auto& u : split_units(spec_)) {
    auto ru = start_unit(u);
    if (!ru) {
      log_->daemon("error", "start_failed",
                   "cannot start '" + u.name + "': " + ru.error().to_string());
      shutdown();
      return 1;
    }
    std::lock_guard<std::mutex> g{mu_};
    units_.push_back(std::move(*ru));
  }
  {
    std::lock_guard<std::mutex> g{mu_};
    publish_routes();
  }
  if (gateway_)
    gateway_->serve();

  std::string pools;
  {
    std::lock_guard<std::mutex> g{mu_};
    for (auto& [name, r] : *routes_) {
      pyvisor::pool p = r.pool;
      const auto st = p.stats();
      pools += (pools.empty() ? "" : ", ") + name + " " + std::to_string(st.ready) + "/" +
               std::to_string(st.workers);
    }
  }
  const std::string on = gateway_ ? "ready on " + where : std::string{"ready (no HTTP listener)"};
  log_->daemon("info", "ready", on, json{{"url", gateway_ ? json(where) : json(nullptr)}});
  print_line(opts_.out, "pyvisor: " + on + " (pools: " + pools + ")");

  for (;;) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    int sig = 0;
    if (sigwait(&set, &sig) != 0)
      continue;
    if (sig == SIGHUP) {
      reload();
      continue;
    }
    log_->daemon("info", "stopping",
                 std::string{"stopping ("} + (sig == SIGINT ? "SIGINT" : "SIGTERM") +
                   "): finishing requests in flight");
    shutdown();
    log_->daemon("info", "stopped", "stopped");
    return 0;
  }
}

void daemon::shutdown() {
  if (gateway_) {
    gateway_->stop_accepting();
    if (!gateway_->drain(spec_.runtime.shutdown_grace))
      log_->daemon("warning", "grace_exceeded",
                   std::to_string(gateway_->in_flight()) +
                     " requests still running after shutdown_grace: stopping the tree anyway");
  }
  std::vector<std::shared_ptr<running_unit>> units;
  {
    std::lock_guard<std::mutex> g{mu_};
    units = units_;
  }
  // Reverse start order, every process reaped before stop() returns.
  for (auto i = units.rbegin(); i != units.rend(); ++i)
    if ((*i)->dep)
      (void)(*i)->dep->stop();
  if (gateway_)
    gateway_->stop();
}

} // namespace pyvisor::gateway
