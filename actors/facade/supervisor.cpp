#include "pyvisor/supervisor.hpp"

#include <algorithm>
#include <random>

#include <caf/all.hpp>

#include "facade/pool_shared.hpp"
#include "facade/runtime_impl.hpp"
#include "facade/supervisor_shared.hpp"
#include "pyvisor/actor_interface.hpp"
#include "supervision/supervisor_actor.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::child_spec)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::child_counts)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<pyvisor::child_info>)

namespace pyvisor {

namespace detail {

supervisor_shared::~supervisor_shared() {
  if (actor)
    caf::anon_send(actor, stop_atom::value);
}

void supervisor_shared::on_event(const supervision_event& e, bool top_level) {
  std::vector<std::function<void(const supervision_event&)>> subs;
  {
    std::lock_guard<std::mutex> g{mu};
    if (top_level && e.child.empty()) {
      if (e.kind == supervision_event::started)
        started = true;
      if (e.kind == supervision_event::gave_up && !end_error)
        end_error = e.report.reason;
      if (e.kind == supervision_event::stopped)
        ended = true;
    }
    subs = subscribers;
  }
  cv.notify_all();
  for (auto& f : subs)
    f(e);
}

} // namespace detail

namespace {

std::optional<error> check_spec(const supervisor_spec& s, const std::string& where) {
  auto bad = [&](std::string what) {
    return make_error(errc::config_error, "supervisor '" + where + "': " + what);
  };
  if (s.intensity < 0)
    return bad("intensity must not be negative");
  if (s.period.count() <= 0)
    return bad("period must be positive");
  if (s.backoff.base.count() < 0 || s.backoff.cap < s.backoff.base || s.backoff.jitter < 0 ||
      s.backoff.jitter >= 1 || s.backoff.reset_after.count() < 0)
    return bad("backoff needs 0 <= base <= cap, 0 <= jitter < 1, reset_after >= 0");
  std::vector<std::string> ids;
  for (auto& c : s.children) {
    if (c.id.empty() || c.id.find('/') != std::string::npos)
      return bad("a child id must be non-empty and without '/' ('" + c.id + "')");
    if (std::find(ids.begin(), ids.end(), c.id) != ids.end())
      return bad("two children are named '" + c.id + "'");
    ids.push_back(c.id);
    if (int(c.interpreter.has_value()) + int(c.supervisor != nullptr) + int(c.pool != nullptr) != 1)
      return bad("child '" + c.id + "' needs exactly one of interpreter, supervisor, pool");
    if (c.supervisor)
      if (auto e = check_spec(*c.supervisor, where + "/" + c.id))
        return e;
  }
  return std::nullopt;
}

/// Makes the child factory of a supervisor whose children live under `prefix` in the registry.
supervision::child_factory factory(std::weak_ptr<runtime::impl> weak_rt,
                                   std::weak_ptr<detail::supervisor_shared> weak_top,
                                   std::string prefix, std::optional<heartbeat_policy> beat) {
  return [=](const child_spec& spec, const caf::actor& sup) -> expected<caf::actor> {
    auto rt = weak_rt.lock();
    auto top = weak_top.lock();
    if (!rt || !top)
      return make_error(errc::shutting_down, "the runtime is shutting down");
    if (spec.interpreter) {
      auto opts = *spec.interpreter;
      if (beat && opts.heartbeat.interval == forever)
        opts.heartbeat = *beat;
      if (opts.label.empty())
        opts.label = prefix + spec.id;
      auto shared = rt->make_interpreter(std::move(opts), sup);
      if (!shared)
        return std::move(shared).error();
      auto actor = (*shared)->actor;
      std::lock_guard<std::mutex> g{top->mu};
      top->children[prefix + spec.id] = std::move(*shared);
      return actor;
    }
    if (spec.pool) {
      auto opts = *spec.pool;
      opts.name = spec.id;
      auto made = rt->make_pool(std::move(opts), sup);
      if (!made)
        return std::move(made).error();
      auto actor = (*made)->actor;
      std::lock_guard<std::mutex> g{top->mu};
      top->pools[prefix + spec.id] = std::move(*made);
      return actor;
    }
    auto& nested = *spec.supervisor;
    supervision::supervisor_config cfg;
    cfg.spec = nested;
    cfg.make = factory(weak_rt, weak_top, prefix + spec.id + "/",
                       nested.heartbeat ? nested.heartbeat : beat);
    cfg.on_event = [weak_rt, weak_top](const supervision_event& e) {
      if (auto rt2 = weak_rt.lock())
        rt2->log(log_record{e.supervisor, e.pid, log_source::runtime, e.to_string(), 0});
      if (auto t = weak_top.lock())
        t->on_event(e, false);
    };
    cfg.parent = sup.address();
    cfg.seed = std::random_device{}();
    return supervision::spawn_supervisor(*rt->sys, std::move(cfg));
  };
}

expected<void> ask(const detail::supervisor_shared& s, caf::message m) {
  caf::scoped_actor self{s.actor->home_system()};
  expected<void> out;
  self->request(s.actor, caf::infinite, std::move(m))
    .receive([](bool) {},
             [&](const caf::error& e) { out = to_error(e); });
  return out;
}

} // namespace

expected<supervisor> runtime::impl::supervise(supervisor_spec spec) {
  if (auto e = check_spec(spec, spec.name))
    return *e;
  auto shared = std::make_shared<detail::supervisor_shared>();
  shared->rt = shared_from_this();
  shared->name = spec.name;
  supervision::supervisor_config cfg;
  cfg.make = factory(weak_from_this(), shared, "", spec.heartbeat);
  cfg.on_event = [weak_rt = weak_from_this(), weak = std::weak_ptr{shared}](const supervision_event& e) {
    if (auto rt = weak_rt.lock())
      rt->log(log_record{e.supervisor, e.pid, log_source::runtime, e.to_string(), 0});
    if (auto s = weak.lock())
      s->on_event(e, true);
  };
  cfg.seed = std::random_device{}();
  cfg.spec = std::move(spec);
  {
    std::lock_guard<std::mutex> g{mu};
    if (shut_down)
      return make_error(errc::shutting_down, "the runtime is shutting down");
    shared->actor = supervision::spawn_supervisor(*sys, std::move(cfg));
    supervisors.erase(std::remove_if(supervisors.begin(), supervisors.end(),
                                     [](auto& a) { return !caf::actor_cast<caf::actor>(a); }),
                      supervisors.end());
    supervisors.push_back(shared->actor.address());
  }
  std::unique_lock<std::mutex> lk{shared->mu};
  shared->cv.wait(lk, [&] { return shared->started || shared->ended; });
  if (!shared->started) {
    auto e = shared->end_error.value_or(make_error(errc::interpreter_down, "the supervisor stopped"));
    return e;
  }
  lk.unlock();
  return supervisor{shared};
}

supervisor::supervisor(std::shared_ptr<detail::supervisor_shared> s) : s_(std::move(s)) {
}

expected<interpreter> supervisor::child(std::string_view path) const {
  std::lock_guard<std::mutex> g{s_->mu};
  auto i = s_->children.find(std::string{path});
  if (i == s_->children.end())
    return make_error(errc::invalid_argument, "no interpreter child '" + std::string{path} + "'");
  return interpreter{i->second};
}

expected<pool> supervisor::child_pool(std::string_view path) const {
  std::lock_guard<std::mutex> g{s_->mu};
  auto i = s_->pools.find(std::string{path});
  if (i == s_->pools.end())
    return make_error(errc::invalid_argument, "no pool child '" + std::string{path} + "'");
  return pool{i->second};
}

expected<void> supervisor::start_child(child_spec spec) {
  return ask(*s_, caf::make_message(start_child_atom::value, std::move(spec)));
}

expected<void> supervisor::terminate_child(const std::string& id) {
  return ask(*s_, caf::make_message(terminate_child_atom::value, id));
}

expected<void> supervisor::restart_child(const std::string& id) {
  return ask(*s_, caf::make_message(restart_child_atom::value, id));
}

expected<void> supervisor::delete_child(const std::string& id) {
  auto r = ask(*s_, caf::make_message(delete_child_atom::value, id));
  if (r) {
    std::lock_guard<std::mutex> g{s_->mu};
    s_->children.erase(id);
    s_->pools.erase(id);
  }
  return r;
}

expected<std::vector<child_info>> supervisor::which_children() const {
  caf::scoped_actor self{s_->actor->home_system()};
  expected<std::vector<child_info>> out = std::vector<child_info>{};
  self->request(s_->actor, caf::infinite, which_children_atom::value)
    .receive([&](std::vector<child_info>& v) { out = std::move(v); },
             [&](const caf::error& e) { out = to_error(e); });
  return out;
}

expected<child_counts> supervisor::count_children() const {
  caf::scoped_actor self{s_->actor->home_system()};
  expected<child_counts> out = child_counts{};
  self->request(s_->actor, caf::infinite, count_children_atom::value)
    .receive([&](child_counts& n) { out = n; },
             [&](const caf::error& e) { out = to_error(e); });
  return out;
}

void supervisor::subscribe(std::function<void(const supervision_event&)> f) {
  std::lock_guard<std::mutex> g{s_->mu};
  s_->subscribers.push_back(std::move(f));
}

expected<void> supervisor::stop() {
  {
    std::lock_guard<std::mutex> g{s_->mu};
    if (s_->ended)
      return {};
  }
  caf::anon_send(s_->actor, stop_atom::value);
  wait_stopped(forever);
  return {};
}

bool supervisor::running() const {
  std::lock_guard<std::mutex> g{s_->mu};
  return !s_->ended;
}

bool supervisor::wait_stopped(std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lk{s_->mu};
  if (timeout == forever) {
    s_->cv.wait(lk, [&] { return s_->ended; });
    return true;
  }
  return s_->cv.wait_for(lk, timeout, [&] { return s_->ended; });
}

std::optional<error> supervisor::end_error() const {
  std::lock_guard<std::mutex> g{s_->mu};
  return s_->end_error;
}

caf::actor supervisor::actor() const {
  return s_->actor;
}

} // namespace pyvisor
