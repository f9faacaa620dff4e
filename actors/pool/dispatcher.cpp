#include "pool/dispatcher.hpp"

#include <algorithm>

namespace pyvisor::pooling {

namespace {

/// Re-entrance guard of pump(): a request answered at once inside pump() (its completion runs
/// on this thread) must not recurse into pump() again; the outer call loops instead.
thread_local int pump_depth = 0;
thread_local bool pump_again = false;

protocol::reply failed(error e) {
  return protocol::reply{std::move(e), std::nullopt, std::nullopt};
}

} // namespace

std::shared_ptr<dispatcher> dispatcher::make(io::io_loop& loop, config cfg) {
  std::shared_ptr<dispatcher> d{new dispatcher{loop, std::move(cfg)}};
  d->timer_ = io::deadline_timer::make(loop, [weak = std::weak_ptr<dispatcher>{d}] {
    if (auto self = weak.lock())
      self->expire_due();
  });
  return d;
}

dispatcher::dispatcher(io::io_loop&, config cfg) : cfg_(std::move(cfg)) {}

dispatcher::~dispatcher() {
  if (timer_)
    timer_->close();
}

std::shared_ptr<worker> dispatcher::pick_locked(std::string_view key) {
  if (workers_.empty())
    return nullptr;
  if (!key.empty()) {
    // The key's owner: the first ring slot clockwise whose worker accepts (a worker that is
    // restarting or leaving passes its keys on to the next one until it is back).
    std::shared_ptr<worker> owner;
    ring_.find(key, [&](std::uint32_t slot) {
      for (auto& w : workers_)
        if (w->ring_slot == slot && w->accepting) {
          owner = w;
          return true;
        }
      return false;
    });
    if (owner && owner->in_flight < cfg_.max_inflight_per_worker)
      return owner;
    return nullptr;
  }
  const std::size_t n = workers_.size();
  if (cfg_.policy == dispatch_policy::round_robin) {
    const std::size_t start = rr_++ % n;
    for (std::size_t k = 0; k < n; ++k)
      if (auto& w = workers_[(start + k) % n]; has_room_locked(*w))
        return w;
    return nullptr;
  }
  // Least loaded; ties go to the earliest worker, so light serial traffic stays on one warm
  // process instead of alternating between caches.
  std::shared_ptr<worker> best;
  for (auto& w : workers_) {
    if (!has_room_locked(*w))
      continue;
    if (!best || w->in_flight < best->in_flight)
      best = w;
    if (best->in_flight == 0)
      break;
  }
  return best;
}

dispatcher::sent dispatcher::submit(const interp::request& r, interp::deadline d,
                                    std::string_view key, completion done) {
  const auto t0 = clock::now();
  std::unique_lock<std::mutex> lk{mu_};
  if (refused_) {
    auto e = *refused_;
    lk.unlock();
    reject(done, std::move(e));
    return {};
  }
  if (queue_.empty()) {
    if (auto w = pick_locked(key)) {
      ++w->in_flight;
      // Its caller may read the reply itself only when nothing else is in flight in the whole
      // pool: under load a lending caller would meet other callers' replies on the pipe and
      // hand it back each time (64 callers on 2 workers, pinned: 114k/s fell to 70k/s).
      bool only = w->in_flight == 1;
      for (auto i = workers_.begin(); only && i != workers_.end(); ++i)
        only = *i == w || (*i)->in_flight == 0;
      lk.unlock();
      auto out = send(w, r, d, std::move(done), t0, key, false);
      out.request.alone = out.request.alone && only;
      return out;
    }
  }
  if (unavailable_) {
    auto e = *unavailable_;
    lk.unlock();
    reject(done, std::move(e));
    return {};
  }
  if (queue_.size() >= cfg_.max_queued) {
    lk.unlock();
    reject(done, make_error(errc::overloaded, "pool '" + cfg_.name + "': its queue is full (" +
                                                std::to_string(cfg_.max_queued) + " requests)"));
    return {};
  }
  queued q{owned_call::of(r), d, d.at, false, std::string{key}, std::move(done), t0};
  if (cfg_.queue_timeout && *cfg_.queue_timeout != forever) {
    auto qt = t0 + *cfg_.queue_timeout;
    if (qt < q.expires) {
      q.expires = qt;
      q.by_queue_timeout = true;
    }
  }
  auto seq = ++seq_;
  auto expires = q.expires;
  queue_.emplace(seq, std::move(q));
  if (expires != clock::time_point::max())
    expiry_.emplace(expires, seq);
  lk.unlock();
  if (expires != clock::time_point::max())
    timer_->arm_at(expires);
  // A worker may have freed capacity between the check and the insert; pump() settles it.
  pump();
  return {};
}

dispatcher::sent dispatcher::submit_to(const std::shared_ptr<worker>& w,
                                       const interp::request& r, interp::deadline d,
                                       completion done) {
  {
    std::lock_guard<std::mutex> g{mu_};
    ++w->in_flight;
  }
  return send(w, r, d, std::move(done), clock::now(), {}, true);
}

dispatcher::sent dispatcher::send(const std::shared_ptr<worker>& w, const interp::request& r,
                                  interp::deadline d, completion done, clock::time_point t0,
                                  std::string_view key, bool pinned) {
  if (cfg_.soft_limit != forever) {
    auto soft = clock::now() + cfg_.soft_limit;
    if (soft < d.at)
      d = interp::deadline{soft, static_cast<std::int64_t>(cfg_.soft_limit.count())};
  }
  if (!w->table) {  // a test double: nothing can run there
    auto rep = failed(make_error(errc::interpreter_down, "worker '" + w->id + "' has no process"));
    bool waiting = finished(w, t0, rep);
    done(std::move(rep), w);
    if (waiting)
      pump();
    return {};
  }
  if (!pinned && !w->table->running()) {
    // Its process just ended and the pool actor has not heard yet: not into that worker's
    // stash, where it would wait out the restart and its backoff, but back to the front of
    // the pool queue for another worker.
    bounce(w, r, d, key, t0, std::move(done));
    return {};
  }
  auto submitted =
    w->table->submit(r, d,
                     [self = shared_from_this(), w, t0, done = std::move(done)](protocol::reply rep) {
                       bool waiting = self->finished(w, t0, rep);
                       done(std::move(rep), w);
                       if (waiting)
                         self->pump();
                     });
  return {w->table, submitted};
}

bool dispatcher::finished(const std::shared_ptr<worker>& w, clock::time_point t0,
                          protocol::reply& rep) {
  const auto now = clock::now();
  latency_.add(now - t0);
  w->latency.add(now - t0);
  served_.fetch_add(1, std::memory_order_relaxed);
  auto served = w->served.fetch_add(1, std::memory_order_relaxed) + 1;
  if (!rep.result) {
    w->errors.fetch_add(1, std::memory_order_relaxed);
    auto c = static_cast<std::size_t>(rep.result.error().code);
    if (c < errors_.size()) {
      errors_[c].fetch_add(1, std::memory_order_relaxed);
      w->errors_by_code[c].fetch_add(1, std::memory_order_relaxed);
    }
  }
  const auto now_ns = std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count();
  w->last_active_ns.store(now_ns, std::memory_order_relaxed);

  // Recycling limits: requests served, then the resident set (read at most every interval).
  std::string due;
  auto after = w->recycle_after.load(std::memory_order_relaxed);
  if (after != 0 && served >= after)
    due = "max_requests: served " + std::to_string(served);
  if (due.empty() && cfg_.recycle.max_rss_bytes != 0) {
    auto last = w->rss_checked_ns.load(std::memory_order_relaxed);
    auto every = std::chrono::duration_cast<std::chrono::nanoseconds>(cfg_.recycle.rss_check_interval);
    if (now_ns - last >= every.count() &&
        w->rss_checked_ns.compare_exchange_strong(last, now_ns, std::memory_order_relaxed)) {
      auto rss = read_rss_bytes(w->pid());
      w->rss_bytes.store(rss, std::memory_order_relaxed);
      if (rss > cfg_.recycle.max_rss_bytes)
        due = "max_rss_bytes: resident " + std::to_string(rss >> 20) + " MiB > " +
              std::to_string(cfg_.recycle.max_rss_bytes >> 20) + " MiB";
    }
  }
  bool flag = !due.empty() && !w->recycle_flagged.exchange(true);

  std::vector<std::uint32_t> drained;
  std::function<void(std::uint32_t, std::string)> recycle_due;
  bool waiting;
  {
    std::lock_guard<std::mutex> g{mu_};
    waiting = !queue_.empty();
    if (w->in_flight > 0)
      --w->in_flight;
    if (flag) {
      w->accepting = false;  // from now on: no new requests; the pool actor replaces it
      recycle_due = listener_.recycle_due;
    }
    check_drained_locked(*w, drained);
  }
  if (recycle_due)
    recycle_due(w->number, std::move(due));
  notify_drained(drained);
  return waiting;
}

void dispatcher::listen(listener l) {
  std::lock_guard<std::mutex> g{mu_};
  listener_ = std::move(l);
}

void dispatcher::notify_drained(const std::vector<std::uint32_t>& drained) {
  if (drained.empty())
    return;
  std::function<void(std::uint32_t)> f;
  {
    std::lock_guard<std::mutex> g{mu_};
    f = listener_.drained;
  }
  if (f)
    for (auto n : drained)
      f(n);
}

void dispatcher::bounce(const std::shared_ptr<worker>& w, const interp::request& r,
                        interp::deadline d, std::string_view key, clock::time_point t0,
                        completion done) {
  queued q{owned_call::of(r), d, d.at, false, std::string{key}, std::move(done), t0};
  if (cfg_.queue_timeout && *cfg_.queue_timeout != forever) {
    auto qt = t0 + *cfg_.queue_timeout;
    if (qt < q.expires) {
      q.expires = qt;
      q.by_queue_timeout = true;
    }
  }
  auto expires = q.expires;
  // Asked again (outside our lock: the table's lock is never taken inside it): a new process
  // that came up meanwhile keeps its worker accepting.
  const bool still_down = !w->table->running();
  std::vector<std::uint32_t> drained;
  {
    std::lock_guard<std::mutex> g{mu_};
    if (w->in_flight > 0)
      --w->in_flight;
    if (still_down)
      w->accepting = false;  // until the pool actor sees it up again
    auto seq = --front_seq_;  // ahead of everything queued
    queue_.emplace(seq, std::move(q));
    if (expires != clock::time_point::max())
      expiry_.emplace(expires, seq);
    check_drained_locked(*w, drained);
  }
  if (expires != clock::time_point::max())
    timer_->arm_at(expires);
  notify_drained(drained);
  pump();
}

void dispatcher::check_drained_locked(worker& w, std::vector<std::uint32_t>& drained) {
  if (w.drain_watch && !w.accepting && w.in_flight == 0) {
    w.drain_watch = false;
    drained.push_back(w.number);
  }
}

dispatcher::batch dispatcher::take_dispatchable_locked() {
  batch out;
  if (queue_.empty())
    return out;
  for (auto i = queue_.begin(); i != queue_.end();) {
    bool any_room = std::any_of(workers_.begin(), workers_.end(),
                                [&](auto& w) { return has_room_locked(*w); });
    if (!any_room)
      break;
    auto w = pick_locked(i->second.key);
    if (!w) {  // a key whose worker is full: it waits, later ones may go elsewhere
      ++i;
      continue;
    }
    ++w->in_flight;
    out.emplace_back(std::move(w), std::move(i->second));
    auto next = std::next(i);
    erase_locked(i);
    i = next;
  }
  return out;
}

void dispatcher::erase_locked(std::map<std::uint64_t, queued>::iterator i) {
  if (i->second.expires != clock::time_point::max()) {
    auto [b, e] = expiry_.equal_range(i->second.expires);
    for (auto k = b; k != e; ++k)
      if (k->second == i->first) {
        expiry_.erase(k);
        break;
      }
  }
  queue_.erase(i);
}

void dispatcher::pump() {
  if (pump_depth > 0) {
    pump_again = true;
    return;
  }
  ++pump_depth;
  do {
    pump_again = false;
    batch b;
    {
      std::lock_guard<std::mutex> g{mu_};
      b = take_dispatchable_locked();
    }
    for (auto& [w, q] : b) {
      auto r = q.call.view();
      send(w, r, q.d, std::move(q.done), q.t0, q.key, false);
    }
  } while (pump_again);
  --pump_depth;
}

void dispatcher::expire_due() {
  std::vector<queued> expired;
  clock::time_point next = clock::time_point::max();
  {
    std::lock_guard<std::mutex> g{mu_};
    const auto now = clock::now();
    while (!expiry_.empty() && expiry_.begin()->first <= now) {
      auto seq = expiry_.begin()->second;
      expiry_.erase(expiry_.begin());
      auto i = queue_.find(seq);
      if (i == queue_.end())
        continue;
      expired.push_back(std::move(i->second));
      queue_.erase(i);
    }
    if (!expiry_.empty())
      next = expiry_.begin()->first;
  }
  if (next != clock::time_point::max())
    timer_->arm_at(next);
  for (auto& q : expired) {
    auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(clock::now() - q.t0);
    std::string msg =
      q.by_queue_timeout
        ? "pool '" + cfg_.name + "': no worker took the request within the queue timeout of " +
            std::to_string(cfg_.queue_timeout->count()) + " ms"
        : "did not finish within " + std::to_string(q.d.ms) + " ms (it waited " +
            std::to_string(waited.count()) + " ms in pool '" + cfg_.name + "''s queue)";
    auto rep = failed(make_error(errc::timeout, std::move(msg)));
    errors_[static_cast<std::size_t>(errc::timeout)].fetch_add(1, std::memory_order_relaxed);
    served_.fetch_add(1, std::memory_order_relaxed);
    latency_.add(clock::now() - q.t0);
    q.done(std::move(rep), nullptr);
  }
}

void dispatcher::answer_all(std::map<std::uint64_t, queued> q, const error& e) {
  for (auto& [seq, entry] : q)
    reject(entry.done, e);
}

void dispatcher::reject(completion& done, error e) {
  auto c = static_cast<std::size_t>(e.code);
  if (c < errors_.size())
    errors_[c].fetch_add(1, std::memory_order_relaxed);
  done(failed(std::move(e)), nullptr);
}

void dispatcher::add(std::shared_ptr<worker> w) {
  std::lock_guard<std::mutex> g{mu_};
  bool slot_known = std::any_of(workers_.begin(), workers_.end(),
                                [&](auto& o) { return o->ring_slot == w->ring_slot; });
  if (!slot_known)
    ring_.add(w->ring_slot);
  w->present = true;
  workers_.push_back(std::move(w));
}

void dispatcher::remove(std::uint32_t number) {
  std::lock_guard<std::mutex> g{mu_};
  auto i = std::find_if(workers_.begin(), workers_.end(),
                        [&](auto& w) { return w->number == number; });
  if (i == workers_.end())
    return;
  auto slot = (*i)->ring_slot;
  (*i)->accepting = false;
  (*i)->present = false;
  workers_.erase(i);
  bool slot_used = std::any_of(workers_.begin(), workers_.end(),
                               [&](auto& o) { return o->ring_slot == slot; });
  if (!slot_used)
    ring_.remove(slot);
}

void dispatcher::set_accepting(std::uint32_t number, bool on) {
  std::vector<std::uint32_t> drained;
  {
    std::lock_guard<std::mutex> g{mu_};
    for (auto& w : workers_)
      if (w->number == number) {
        w->accepting = on && !w->recycle_flagged.load(std::memory_order_relaxed);
        check_drained_locked(*w, drained);
      }
  }
  notify_drained(drained);
  if (on)
    pump();
}

void dispatcher::watch_drain(std::uint32_t number) {
  std::vector<std::uint32_t> drained;
  {
    std::lock_guard<std::mutex> g{mu_};
    for (auto& w : workers_)
      if (w->number == number) {
        w->drain_watch = true;
        check_drained_locked(*w, drained);
      }
  }
  notify_drained(drained);
}

void dispatcher::set_unavailable(std::optional<error> e) {
  std::map<std::uint64_t, queued> q;
  {
    std::lock_guard<std::mutex> g{mu_};
    unavailable_ = e;
    if (e) {
      q.swap(queue_);
      expiry_.clear();
    }
  }
  if (e)
    answer_all(std::move(q), *e);
  else
    pump();
}

void dispatcher::refuse(error e) {
  std::map<std::uint64_t, queued> q;
  {
    std::lock_guard<std::mutex> g{mu_};
    refused_ = e;
    q.swap(queue_);
    expiry_.clear();
  }
  answer_all(std::move(q), e);
}

std::size_t dispatcher::cancel_queued() {
  std::map<std::uint64_t, queued> q;
  {
    std::lock_guard<std::mutex> g{mu_};
    q.swap(queue_);
    expiry_.clear();
  }
  auto n = q.size();
  answer_all(std::move(q), make_error(errc::cancelled, "cancelled by interrupt() while queued"));
  return n;
}

std::shared_ptr<worker> dispatcher::find(std::uint32_t number) const {
  std::lock_guard<std::mutex> g{mu_};
  for (auto& w : workers_)
    if (w->number == number)
      return w;
  return nullptr;
}

dispatcher::snapshot dispatcher::stats() const {
  snapshot s;
  {
    std::lock_guard<std::mutex> g{mu_};
    s.queued = queue_.size();
    for (auto& w : workers_) {
      s.in_flight += w->in_flight;
      if (w->accepting)
        ++s.accepting;
      s.in_flight_by_worker.emplace_back(w->number, w->in_flight);
    }
  }
  for (std::size_t c = 0; c < errors_.size(); ++c)
    if (auto n = errors_[c].load(std::memory_order_relaxed))
      s.errors.emplace_back(static_cast<errc>(c), n);
  s.served = served_.load(std::memory_order_relaxed);
  return s;
}

} // namespace pyvisor::pooling
