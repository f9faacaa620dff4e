#include "pyvisor/pool.hpp"

#include <algorithm>
#include <condition_variable>
#include <random>

#include <caf/all.hpp>

#include "facade/env_shared.hpp"
#include "facade/pool_shared.hpp"
#include "facade/reply_waiter.hpp"
#include "facade/runtime_impl.hpp"
#include "pyvisor/actor_interface.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::pool_stats)

namespace pyvisor {

namespace detail {

pool_shared::~pool_shared() {
  if (actor)
    caf::anon_send(actor, stop_atom::value);
}

} // namespace detail

namespace {

using detail::pool_shared;

std::optional<error> check_pool_options(const pool_options& o) {
  auto bad = [&](std::string what) {
    return make_error(errc::config_error, "pool '" + o.name + "': " + what);
  };
  if (o.name.empty())
    return bad("a pool needs a name");
  if (o.workers == 0)
    return bad("workers must be at least 1");
  if (o.min_ready && *o.min_ready > o.workers)
    return bad("min_ready must not exceed workers");
  if (o.max_inflight_per_worker == 0)
    return bad("max_inflight_per_worker must be at least 1");
  if (o.queue_timeout && *o.queue_timeout != forever && o.queue_timeout->count() <= 0)
    return bad("queue_timeout must be positive or forever");
  if (o.heartbeat.interval != forever &&
      (o.heartbeat.interval.count() <= 0 || o.heartbeat.timeout.count() <= 0))
    return bad("heartbeat: interval and timeout must be positive (interval forever: off)");
  if (o.breaker.max_failures == 0)
    return bad("breaker.max_failures must be at least 1");
  if (o.breaker.reset_timeout.count() <= 0 || o.breaker.max_reset_timeout < o.breaker.reset_timeout)
    return bad("breaker needs 0 < reset_timeout <= max_reset_timeout");
  const auto& b = o.backoff;
  if (b.base.count() < 0 || b.cap < b.base || b.jitter < 0 || b.jitter >= 1 ||
      b.reset_after.count() < 0)
    return bad("backoff needs 0 <= base <= cap, 0 <= jitter < 1, reset_after >= 0");
  if (o.recycle.rss_check_interval.count() < 0)
    return bad("recycle.rss_check_interval must not be negative");
  if (o.recycle.max_idle != forever && o.recycle.max_idle.count() <= 0)
    return bad("recycle.max_idle must be positive or forever");
  const auto& l = o.limits;
  if ((l.soft != forever && l.soft.count() <= 0) || (l.hard != forever && l.hard.count() <= 0))
    return bad("time limits must be positive or forever");
  if (l.soft != forever && l.hard != forever && l.hard <= l.soft)
    return bad("limits.hard must be above limits.soft");
  const auto& a = o.autoscale;
  std::size_t lo = a.min_workers == 0 ? o.workers : a.min_workers;
  std::size_t hi = a.max_workers == 0 ? o.workers : a.max_workers;
  if (a.max_workers != 0 && hi < lo)
    return bad("autoscale.max_workers must not be below min_workers");
  if (o.workers < lo || (a.max_workers != 0 && o.workers > hi))
    return bad("workers must lie within [autoscale.min_workers, autoscale.max_workers]");
  if (a.inflight_per_worker <= 0 || a.up_window.count() < 0 || a.idle_timeout.count() <= 0 ||
      a.check_interval.count() <= 0)
    return bad("autoscale needs inflight_per_worker > 0, up_window >= 0, positive idle_timeout "
               "and check_interval");
  return std::nullopt;
}

/// The options every worker starts from: the pool's heartbeat when the spec has none, and the
/// hard time limit as the escalation's kill bound.
interpreter_options worker_options(const pool_options& o, std::uint32_t number) {
  auto w = o.worker;
  w.label = o.name + "-w" + std::to_string(number);
  if (w.heartbeat.interval == forever && w.transport == transport::fds)
    w.heartbeat = o.heartbeat;
  if (o.limits.hard != forever) {
    // The request times out at the soft limit (or at the hard one when there is none); code
    // still running at the hard limit is killed: grace, then SIGINT, then kill_after.
    auto soft = o.limits.soft != forever ? o.limits.soft : o.limits.hard;
    auto left = o.limits.hard - soft - w.interrupt.grace;
    if (o.limits.soft == forever) {
      w.interrupt.grace = std::chrono::milliseconds{0};
      left = std::chrono::milliseconds{0};
    }
    w.interrupt.kill_after = left.count() < 0 ? std::chrono::milliseconds{0} : left;
  }
  return w;
}

void note_event(const std::weak_ptr<runtime::impl>& weak_rt, const std::weak_ptr<pool_shared>& weak,
                const pool_event& e) {
  if (auto rt = weak_rt.lock())
    rt->log(log_record{e.pool, e.pid, log_source::runtime, e.to_string(), 0});
  std::vector<std::function<void(const pool_event&)>> subs;
  if (auto s = weak.lock()) {
    std::lock_guard<std::mutex> g{s->mu};
    subs = s->subscribers;
  }
  for (auto& f : subs)
    f(e);
}

interp::request request_of(interp::request::op_t op, std::string_view text, const vars* bound,
                           const std::vector<arg>* args, const eval_options& o) {
  interp::request r;
  r.op = op;
  r.text = text;
  r.bound = bound;
  r.args = args;
  r.file = o.file;
  r.line = o.line;
  r.capture = o.capture != nullptr;
  r.bytes_as_bytearray = o.bytes_as_bytearray;
  r.bytes_as_memoryview = o.bytes_as_memoryview;
  r.replay = o.replay;
  return r;
}

/// One blocked caller of a pool, and the worker that answered.
struct pool_waiter : detail::reply_waiter {
  using detail::reply_waiter::reply_waiter;
  std::shared_ptr<pooling::worker> w;  // written before set() publishes the reply
};

protocol::reply wait_for(pool_shared& s, const interp::request& r, interp::deadline d,
                         std::string_view key, std::shared_ptr<pooling::worker>* who = nullptr) {
  auto pw = std::make_shared<pool_waiter>(s.rt->loop->wakes().of_this_thread());
  auto sent = s.disp->submit(r, d, key,
                             [pw](protocol::reply rep, const std::shared_ptr<pooling::worker>& w) {
                               pw->w = w;
                               pw->set(std::move(rep));
                             });
  auto rep = pw->wait(sent.table.get(), sent.request);
  if (who != nullptr)
    *who = pw->w;
  return rep;
}

expected<value> value_of(protocol::reply rep, const eval_options& o) {
  if (o.capture != nullptr) {
    o.capture->out = rep.out.value_or(std::string{});
    o.capture->err = rep.err.value_or(std::string{});
  }
  return std::move(rep.result);
}

} // namespace

expected<std::shared_ptr<pool_shared>> runtime::impl::make_pool(pool_options opts,
                                                              const caf::actor& parent) {
  auto& rt = *this;
  if (auto e = check_pool_options(opts))
    return *e;
  if (auto e = check_interpreter_options(worker_options(opts, 1)))
    return make_error(errc::config_error, "pool '" + opts.name + "': worker: " + e->message);
  auto shared = std::make_shared<pool_shared>();
  shared->rt = rt.shared_from_this();
  shared->opts = opts;
  pooling::dispatcher::config dc;
  dc.name = opts.name;
  dc.policy = opts.dispatch;
  dc.max_inflight_per_worker = opts.max_inflight_per_worker;
  dc.max_queued = opts.max_queued;
  dc.queue_timeout = opts.queue_timeout;
  dc.soft_limit = opts.limits.soft != forever ? opts.limits.soft : opts.limits.hard;
  dc.recycle = opts.recycle;
  shared->disp = pooling::dispatcher::make(*rt.loop, dc);

  std::weak_ptr<runtime::impl> weak_rt = rt.weak_from_this();
  std::weak_ptr<pool_shared> weak = shared;
  pooling::pool_config cfg;
  cfg.opts = opts;
  cfg.disp = shared->disp;
  cfg.seed = std::random_device{}();
  cfg.make = [weak_rt, weak](std::uint32_t number, std::uint32_t ring_slot,
                             const caf::actor& pool_actor) -> expected<std::shared_ptr<pooling::worker>> {
    auto rt2 = weak_rt.lock();
    auto s = weak.lock();
    if (!rt2 || !s)
      return make_error(errc::shutting_down, "the runtime is shutting down");
    auto made = rt2->make_interpreter(worker_options(s->opts, number), pool_actor);
    if (!made)
      return std::move(made).error();
    auto w = std::make_shared<pooling::worker>();
    w->number = number;
    w->id = "w" + std::to_string(number);
    w->ring_slot = ring_slot;
    w->actor = (*made)->actor;
    w->table = (*made)->table;
    w->st = (*made)->st;
    std::lock_guard<std::mutex> g{s->mu};
    s->workers[number] = std::move(*made);
    return w;
  };
  cfg.on_event = [weak_rt, weak](const pool_event& e) { note_event(weak_rt, weak, e); };
  cfg.on_status = [weak](const pooling::pool_status& st) {
    if (auto s = weak.lock()) {
      {
        std::lock_guard<std::mutex> g{s->mu};
        s->status = st;
      }
      s->cv.notify_all();
    }
  };
  cfg.on_worker_gone = [weak](std::uint32_t number) {
    std::shared_ptr<detail::interpreter_shared> gone;
    if (auto s = weak.lock()) {
      std::lock_guard<std::mutex> g{s->mu};
      auto i = s->workers.find(number);
      if (i != s->workers.end()) {
        gone = std::move(i->second);
        s->workers.erase(i);
      }
    }
    // `gone` is released here, outside the lock (its destructor sends a message).
  };
  cfg.parent = parent.address();
  {
    std::lock_guard<std::mutex> g{rt.mu};
    if (rt.shut_down)
      return make_error(errc::shutting_down, "the runtime is shutting down");
    shared->actor = pooling::spawn_pool_actor(*rt.sys, std::move(cfg));
    // A pool in a tree is stopped by its supervisor; a top-level one by the shutdown.
    if (!parent) {
      rt.supervisors.erase(std::remove_if(rt.supervisors.begin(), rt.supervisors.end(),
                                          [](auto& a) { return !caf::actor_cast<caf::actor>(a); }),
                           rt.supervisors.end());
      rt.supervisors.push_back(shared->actor.address());
    }
  }
  return shared;
}

expected<pool> runtime::spawn_pool(pool_options opts) {
  auto made = impl_->make_pool(opts, caf::actor{});
  if (!made)
    return std::move(made).error();
  auto shared = std::move(*made);
  const std::size_t need = opts.min_ready.value_or(opts.workers);
  std::unique_lock<std::mutex> lk{shared->mu};
  shared->cv.wait(lk, [&] {
    return shared->status.ready >= need || shared->status.breaker_open || shared->status.ended;
  });
  if (shared->status.ready >= need) {
    lk.unlock();
    return pool{shared};
  }
  auto e = shared->status.last_start_error.value_or(
    make_error(errc::interpreter_down, "pool '" + opts.name + "' stopped while starting"));
  lk.unlock();
  pool failed{shared};
  (void)failed.stop();  // the start error is what the caller needs
  return e;
}

pool::pool(std::shared_ptr<detail::pool_shared> s) : s_(std::move(s)) {
}

expected<value> pool::eval(std::string_view code, const vars& v, const eval_options& o) {
  if (auto e = interp::check_timeout(o.timeout))
    return *e;
  auto r = request_of(interp::request::op_t::eval, code, &v, nullptr, o);
  return value_of(wait_for(*s_, r, interp::deadline_for(o.timeout, s_->opts.worker.default_timeout), o.key), o);
}

void pool::eval_async(std::string_view code, const vars& v, const eval_options& o,
                      std::function<void(expected<value>)> done) {
  if (auto e = interp::check_timeout(o.timeout)) {
    done(std::move(*e));
    return;
  }
  auto r = request_of(interp::request::op_t::eval, code, &v, nullptr, o);
  s_->disp->submit(r, interp::deadline_for(o.timeout, s_->opts.worker.default_timeout), o.key,
                   [o, done = std::move(done)](protocol::reply rep, const std::shared_ptr<pooling::worker>&) {
                     done(value_of(std::move(rep), o));
                   });
}

expected<value> pool::call(std::string_view name, const std::vector<arg>& args,
                           const vars& kwargs, const eval_options& o) {
  if (auto e = interp::check_timeout(o.timeout))
    return *e;
  auto r = request_of(interp::request::op_t::call, name, &kwargs, &args, o);
  return value_of(wait_for(*s_, r, interp::deadline_for(o.timeout, s_->opts.worker.default_timeout), o.key), o);
}

expected<env> pool::make_env(const env_options& o) {
  if (auto e = interp::check_timeout(o.timeout))
    return *e;
  std::vector<protocol::env_spec> from;
  std::shared_ptr<detail::interpreter_shared> home;
  for (const auto& src : o.from) {
    if (auto e = interp::check_env_source(src.only.has_value(), src.except.has_value()))
      return *e;
    auto* es = detail::env_access::shared(src.source);
    if (es == nullptr || es->destroyed.load())
      return make_error(errc::env_not_found, "env " + std::to_string(src.source.id()) + " was destroyed");
    if (home && es->interp != home)
      return make_error(errc::invalid_argument, "make_env: the sources live on different workers");
    home = es->interp;
    from.push_back({src.source.id(), src.only, src.except});
  }
  if (home) {
    // Made from envs: on the worker that holds them.
    bool ours = false;
    {
      std::lock_guard<std::mutex> g{s_->mu};
      for (auto& [n, w] : s_->workers)
        ours = ours || w == home;
    }
    if (!ours)
      return make_error(errc::invalid_argument, "an env source belongs to another pool or interpreter");
    return interpreter{home}.make_env(o);
  }
  auto shared = std::make_shared<detail::env_shared>();
  shared->id = s_->disp->next_env_id();
  shared->durable = o.durable;
  interp::request r;
  r.op = interp::request::op_t::make_env;
  r.env = shared->id;
  r.from = &from;
  r.bound = &o.vars;
  r.durable = o.durable;
  std::shared_ptr<pooling::worker> who;
  auto rep = wait_for(*s_, r, interp::deadline_for(o.timeout, s_->opts.worker.default_timeout),
                      o.key, &who);
  if (!rep.result) {
    shared->destroyed = true;  // nothing to drop
    return std::move(rep.result).error();
  }
  {
    std::lock_guard<std::mutex> g{s_->mu};
    auto i = who ? s_->workers.find(who->number) : s_->workers.end();
    if (i != s_->workers.end())
      shared->interp = i->second;
  }
  if (!shared->interp) {
    shared->destroyed = true;
    return make_error(errc::env_lost, "the env's worker left the pool");
  }
  return env{std::move(shared)};
}

expected<std::size_t> pool::interrupt() {
  caf::scoped_actor self{s_->actor->home_system()};
  expected<std::size_t> out = make_error(errc::interpreter_down, "the pool is stopped");
  self->request(s_->actor, caf::infinite, interrupt_atom::value)
    .receive([&](std::size_t n) { out = n; }, [&](const caf::error& e) { out = to_error(e); });
  return out;
}

expected<void> pool::resize(std::size_t n) {
  caf::scoped_actor self{s_->actor->home_system()};
  expected<void> out;
  self->request(s_->actor, caf::infinite, pool_resize_atom::value, n)
    .receive([](bool) {}, [&](const caf::error& e) { out = to_error(e); });
  return out;
}

pool_stats pool::stats() const {
  caf::scoped_actor self{s_->actor->home_system()};
  pool_stats out;
  out.name = s_->opts.name;
  self->request(s_->actor, caf::infinite, pool_stats_atom::value)
    .receive([&](pool_stats& p) { out = std::move(p); }, [](const caf::error&) {});
  return out;
}

void pool::subscribe(std::function<void(const pool_event&)> f) {
  std::lock_guard<std::mutex> g{s_->mu};
  s_->subscribers.push_back(std::move(f));
}

bool pool::wait_ready(std::size_t n, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lk{s_->mu};
  auto pred = [&] { return s_->status.ready >= n; };
  if (timeout == forever) {
    s_->cv.wait(lk, [&] { return pred() || s_->status.ended; });
    return pred();
  }
  return s_->cv.wait_for(lk, timeout, pred);
}

expected<void> pool::stop() {
  {
    caf::scoped_actor self{s_->actor->home_system()};
    self->request(s_->actor, caf::infinite, stop_atom::value)
      .receive([](bool) {}, [](const caf::error&) {});
  }
  // Every worker's actor ended; wait until their processes are reaped.
  std::vector<std::shared_ptr<detail::interpreter_shared>> ws;
  {
    std::lock_guard<std::mutex> g{s_->mu};
    for (auto& [n, w] : s_->workers)
      ws.push_back(w);
  }
  for (auto& w : ws)
    w->st->wait([](interpreter_state s) { return s == interpreter_state::stopped; }, forever);
  return {};
}

caf::actor pool::actor() const {
  return s_->actor;
}

} // namespace pyvisor
