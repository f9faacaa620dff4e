// SIGHUP (docs/http.md, "Reload"): an invalid config is rejected with its file:line problems and
// the old tree keeps serving. Units whose effective spec did not change keep running; a changed
// unit starts anew beside the old one, requests switch to it once its pools are ready (min_ready),
// and only then the old one drains (its requests finish, bounded by shutdown_grace) and stops:
// no request is refused. Removed units drain and stop the same way.
#include <thread>

#include "gateway/daemon.hpp"
#include "pyvisor/config.hpp"

namespace pyvisor::gateway {

namespace {

/// Waits until none of the unit's pools has requests queued or in flight, or `bound` passed.
void drain_unit(deployment& d, const std::vector<std::string>& pools,
                std::chrono::milliseconds bound) {
  const auto until = std::chrono::steady_clock::now() + bound;
  for (;;) {
    bool idle = true;
    for (auto& name : pools)
      if (auto p = d.find_pool(name)) {
        const auto st = p->stats();
        if (st.in_flight != 0 || st.queued != 0)
          idle = false;
      }
    if (idle || std::chrono::steady_clock::now() >= until)
      return;
    std::this_thread::sleep_for(std::chrono::milliseconds{10});
  }
}

} // namespace

void daemon::reload() {
  log_->daemon("info", "reloading", "SIGHUP: reloading " + opts_.config_path);
  auto loaded = load_config(opts_.config_path);
  if (!loaded.ok()) {
    reload_failures_.fetch_add(1);
    json problems = json::array();
    for (auto& p : loaded.problems) {
      problems.push_back(p.to_string());
      log_->daemon("error", "config_problem", p.to_string());
    }
    log_->daemon("error", "reload_rejected",
                 "reload rejected (" + std::to_string(loaded.problems.size()) +
                   " problems): the running tree keeps serving",
                 json{{"problems", problems}});
    return;
  }
  runtime_spec next = std::move(*loaded.spec);
  // Settings that apply live, and those that need a restart.
  log_->set_format(next.runtime.log_format, next.runtime.log_level);
  if (next.runtime.http_listen != spec_.runtime.http_listen ||
      next.runtime.threads != spec_.runtime.threads ||
      to_toml(runtime_spec{.runtime = {}, .gateway = next.gateway}) !=
        to_toml(runtime_spec{.runtime = {}, .gateway = spec_.gateway}))
    log_->daemon("warning", "restart_needed",
                 "[runtime] http_listen/threads and [gateway] changes take effect after a restart");

  std::vector<std::shared_ptr<running_unit>> old;
  {
    std::lock_guard<std::mutex> g{mu_};
    old = units_;
  }
  std::vector<std::shared_ptr<running_unit>> kept, started, retired;
  std::size_t unchanged = 0;
  bool failed = false;
  for (auto& u : split_units(next)) {
    std::shared_ptr<running_unit> same;
    for (auto& o : old)
      if (o->unit.name == u.name && o->unit.fingerprint == u.fingerprint)
        same = o;
    if (same) {
      kept.push_back(same);
      ++unchanged;
      continue;
    }
    auto ru = start_unit(u);
    if (!ru) {
      log_->daemon("error", "reload_rejected",
                   "reload rejected: '" + u.name + "' cannot start: " + ru.error().to_string() +
                     "; the running tree keeps serving");
      failed = true;
      break;
    }
    log_->daemon("info", "unit_started", "'" + u.name + "' started (new or changed)");
    started.push_back(*ru);
    kept.push_back(*ru);
  }
  if (failed) {
    reload_failures_.fetch_add(1);
    for (auto& s : started)
      (void)s->dep->stop();
    return;
  }
  for (auto& o : old)
    if (std::find(kept.begin(), kept.end(), o) == kept.end())
      retired.push_back(o);
  {
    std::lock_guard<std::mutex> g{mu_};
    units_ = kept;
    spec_ = next;
    publish_routes();
  }
  for (auto& r : retired) {
    for (auto& name : r->unit.pools)
      if (gateway_)
        gateway_->pool_replaced(name, "the pool was replaced or removed by a reload");
    drain_unit(*r->dep, r->unit.pools, spec_.runtime.shutdown_grace);
    (void)r->dep->stop();
    log_->daemon("info", "unit_stopped", "'" + r->unit.name + "' (old generation) drained and stopped");
  }
  reloads_.fetch_add(1);
  log_->daemon("info", "reloaded",
               "reloaded: " + std::to_string(unchanged) + " unchanged, " +
                 std::to_string(started.size()) + " started, " + std::to_string(retired.size()) +
                 " stopped",
               json{{"unchanged", unchanged}, {"started", started.size()}, {"stopped", retired.size()}});
}

} // namespace pyvisor::gateway
