#include "interpreter/request_table.hpp"

#include <algorithm>
#include <limits>

namespace pyvisor::interp {

namespace {

busy_limits effective(busy_limits b) {
  if (b.disabled) {
    constexpr auto inf = std::numeric_limits<std::size_t>::max();
    b.high_water = b.low_water = b.max_inflight = b.max_queued = inf;
  }
  if (b.low_water > b.high_water)
    b.low_water = b.high_water;
  if (b.max_inflight == 0)
    b.max_inflight = 1;
  return b;
}

} // namespace

std::shared_ptr<request_table> request_table::make(io::io_loop& loop, config cfg) {
  std::shared_ptr<request_table> t{new request_table{loop, std::move(cfg)}};
  t->timer_ = io::deadline_timer::make(loop, [weak = std::weak_ptr<request_table>{t}] {
    if (auto self = weak.lock())
      self->expire_due();
  });
  return t;
}

request_table::request_table(io::io_loop& loop, config cfg)
  : loop_(loop), busy_(effective(cfg.busy)), max_frame_(cfg.max_frame_bytes),
    shared_from_(cfg.shared_from),
    label_(std::move(cfg.label)) {
}

request_table::~request_table() {
  if (timer_)
    timer_->close();
}

void request_table::on_abandoned(std::function<void(std::uint64_t)> f) {
  std::lock_guard<std::mutex> g{mu_};
  abandoned_ = std::move(f);
}

protocol::frame_out request_table::encode(std::uint64_t id, const request& r) const {
  static const vars no_vars;
  static const std::vector<arg> no_args;
  static const std::vector<protocol::env_spec> no_from;
  const vars& v = r.bound ? *r.bound : no_vars;
  protocol::request_extras x{r.env, r.capture, r.bytes_as_bytearray, r.bytes_as_memoryview,
                             shared_from_};
  switch (r.op) {
    case request::op_t::eval:
      return protocol::encode_code_request_out(id, "eval", r.text, v, r.file, r.line, x);
    case request::op_t::init: {
      protocol::request_extras plain;
      plain.slots_from = shared_from_;
      return protocol::encode_code_request_out(id, "init", r.text, v, r.file, r.line, plain);
    }
    case request::op_t::call:
      return protocol::encode_call_out(id, r.text, r.args ? *r.args : no_args, v, x);
    case request::op_t::make_env:
      return protocol::encode_make_env(id, r.env, r.from ? *r.from : no_from, v);
  }
  return {};
}

bool request_table::admit_now_locked() const {
  return open_ && conn_ && queue_.empty() && inflight_ < busy_.max_inflight && !conn_->busy();
}

bool request_table::running() const {
  std::lock_guard<std::mutex> g{mu_};
  return !refused_ && stash_limit_ == 0 && (open_ || conn_ != nullptr);
}

request_table::submitted request_table::submit(const request& r, deadline d, completion done, bool priority) {
  if (r.bytes_as_bytearray && r.bytes_as_memoryview) {
    done(protocol::reply{make_error(errc::invalid_argument,
                                    "bytes_as_bytearray and bytes_as_memoryview exclude each other")});
    return {};
  }
  auto id = next_id_.fetch_add(1, std::memory_order_relaxed);
  // Encoded outside the lock: callers on many threads encode in parallel.
  auto frame = encode(id, r);
  if (auto size = frame.body_size(); size > max_frame_) {  // as the pipe would carry it
    done(protocol::reply{make_error(errc::frame_too_large,
                                    "request of " + std::to_string(size) +
                                      " bytes exceeds max_frame_bytes (" +
                                      std::to_string(max_frame_) + ")")});
    return {};
  }
  if (!priority && (r.op == request::op_t::make_env || (r.replay && r.env != 0)))
    done = recording(r, std::move(done));
  std::unique_lock<std::mutex> lk{mu_};
  if (refused_ && !priority) {
    auto e = *refused_;
    lk.unlock();
    done(protocol::reply{std::move(e)});
    return {};
  }
  if (r.env != 0 && r.op != request::op_t::make_env && !priority) {
    if (auto e = envs_.error_of(r.env)) {
      lk.unlock();
      done(protocol::reply{std::move(*e)});
      return {};
    }
  }
  bool send_now = priority ? conn_ != nullptr : admit_now_locked();
  auto queue_limit = stash_limit_ > 0 ? std::min(stash_limit_, busy_.max_queued) : busy_.max_queued;
  if (!send_now && !priority && queued_requests_ >= queue_limit) {
    ++overloaded_;
    auto e = stash_limit_ > 0
               ? make_error(errc::overloaded,
                            "interpreter '" + label_ + "' is restarting and its stash is full (" +
                              std::to_string(queued_requests_) + " requests, restart_stash " +
                              std::to_string(stash_limit_) + ")")
               : make_error(errc::overloaded,
                            "interpreter '" + label_ + "' is overloaded: " +
                              std::to_string(inflight_) + " requests in flight, " +
                              std::to_string(queued_requests_) + " queued (max_queued " +
                              std::to_string(busy_.max_queued) + ")");
    lk.unlock();
    done(protocol::reply{std::move(e)});
    return {};
  }
  // Registered before the write: the reply may arrive before write() returns.
  auto& p = pending_.emplace(id, pending_entry{std::move(done), send_now}).first->second;
  p.due = deadlines_.end();
  if (d.set()) {
    p.due = deadlines_.emplace(d.at, id);
    p.timeout_ms = d.ms;
  }
  submitted out{id, false};
  if (send_now) {
    ++inflight_;
    out.alone = inflight_ == 1 && !priority;
    send_locked(std::move(frame), id);
  } else {
    queue_.push_back({id, std::move(frame), r.op == request::op_t::make_env ? 0 : r.env});
    ++queued_requests_;
  }
  lk.unlock();
  if (d.set())
    timer_->arm_at(d.at);
  return out;
}

bool request_table::read_reply_here(std::uint64_t id, io::thread_wake& wake,
                                    const std::function<bool()>& answered) {
  std::shared_ptr<io::connection> c;
  {
    std::lock_guard<std::mutex> g{mu_};
    c = conn_;
  }
  return c && c->read_reply_here(id, wake, answered);
}

void request_table::send_locked(protocol::frame_out frame, std::uint64_t id) {
  // A closed connection (the process is ending) answers what was sent through its exit.
  if (!conn_)
    return;
  if (area_) {
    // Ranges of the runner's area no value holds any more: it learns of them before it
    // answers this request (the only time it needs space).
    if (auto frees = area_->take_frees(); !frees.empty())
      conn_->write(protocol::encode_shm_free(frees));
    if (!frame.slots.empty() && area_->place(id, frame))
      ++shared_out_;
  }
  if (!frame.slots.empty())  // no area, or it is full: the pipe carries the bytes
    frame.bytes = std::move(frame).inline_frame();
  conn_->write(std::move(frame.bytes));
}

void request_table::use_area(std::shared_ptr<io::shared_area> area) {
  std::lock_guard<std::mutex> g{mu_};
  area_ = std::move(area);
}

void request_table::drop_env(std::uint64_t env) {
  std::lock_guard<std::mutex> g{mu_};
  envs_.drop(env);
  if (refused_)
    return;
  if (!open_ || !conn_ || !queue_.empty()) {
    queue_.push_back({0, protocol::encode_drop_env(env), 0});  // keeps its place
    return;
  }
  send_locked(protocol::encode_drop_env(env));
}

void request_table::pump_locked() {
  while (open_ && conn_ && !queue_.empty() && !conn_->busy()) {
    auto& q = queue_.front();
    if (q.id != 0) {
      if (inflight_ >= busy_.max_inflight)
        break;
      auto i = pending_.find(q.id);
      --queued_requests_;
      if (i == pending_.end()) {  // cannot happen: forget_locked removes its queue entry
        queue_.pop_front();
        continue;
      }
      i->second.sent = true;
      ++inflight_;
    }
    auto frame = std::move(q.frame);
    auto id = q.id;
    queue_.pop_front();
    send_locked(std::move(frame), id);
  }
}

void request_table::forget_locked(std::unordered_map<std::uint64_t, pending_entry>::iterator i) {
  if (i->second.sent) {
    --inflight_;
  } else {
    for (auto q = queue_.begin(); q != queue_.end(); ++q) {
      if (q->id == i->first) {
        queue_.erase(q);
        --queued_requests_;
        break;
      }
    }
  }
  if (i->second.due != deadlines_.end())
    deadlines_.erase(i->second.due);
  pending_.erase(i);
}

void request_table::expire_due() {
  taken expired;
  std::vector<std::int64_t> bounds;
  std::vector<std::uint64_t> escalate;
  std::function<void(std::uint64_t)> abandoned;
  clock::time_point next = clock::time_point::max();
  {
    std::lock_guard<std::mutex> g{mu_};
    auto now = clock::now();
    while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
      auto id = deadlines_.begin()->second;
      auto i = pending_.find(id);
      if (i == pending_.end()) {  // cannot happen: forget_locked erases the deadline
        deadlines_.erase(deadlines_.begin());
        continue;
      }
      bool was_sent = i->second.sent;
      expired.emplace_back(id, std::move(i->second.cb));
      bounds.push_back(i->second.timeout_ms);
      forget_locked(i);
      if (was_sent && conn_) {
        // Still running in the runner until it answers: it keeps counting against
        // max_inflight, so the host never sends more than the runner admits (a runner at its
        // limit stops reading, and a request stuck unread in the pipe could not be cancelled).
        unacknowledged_.insert(id);
        ++inflight_;
        send_locked(protocol::encode_cancel(id));
        escalate.push_back(id);
      }
    }
    pump_locked();
    if (!deadlines_.empty())
      next = deadlines_.begin()->first;
    abandoned = abandoned_;
  }
  if (next != clock::time_point::max())
    timer_->arm_at(next);
  for (std::size_t k = 0; k < expired.size(); ++k)
    expired[k].second(protocol::reply{make_error(
      errc::timeout, "request did not finish within " + std::to_string(bounds[k]) + " ms")});
  if (abandoned)
    for (auto id : escalate)
      abandoned(id);
}

bool request_table::is_pending(std::uint64_t id) const {
  std::lock_guard<std::mutex> g{mu_};
  return pending_.count(id) > 0;
}

bool request_table::unacknowledged(std::uint64_t id) const {
  std::lock_guard<std::mutex> g{mu_};
  return unacknowledged_.count(id) > 0;
}

request_table::taken request_table::take_queued_locked() {
  // Queued requests are taken out; queued notifications (drop_env) keep their place.
  taken out;
  std::deque<queued> keep;
  for (auto& q : queue_) {
    if (q.id == 0) {
      keep.push_back(std::move(q));
      continue;
    }
    auto i = pending_.find(q.id);
    if (i != pending_.end()) {
      out.emplace_back(q.id, std::move(i->second.cb));
      if (i->second.due != deadlines_.end())
        deadlines_.erase(i->second.due);
      pending_.erase(i);
    }
  }
  queue_ = std::move(keep);
  queued_requests_ = 0;
  return out;
}

std::vector<std::uint64_t> request_table::cancel_all() {
  std::vector<std::uint64_t> in_flight;
  taken never_sent;
  {
    std::lock_guard<std::mutex> g{mu_};
    never_sent = take_queued_locked();
    pump_locked();  // notifications that were queued behind them
    for (auto& [id, p] : pending_) {
      if (!p.sent)
        continue;
      in_flight.push_back(id);
      p.cancel_sent = true;
      send_locked(protocol::encode_cancel(id));
    }
  }
  auto e = make_error(errc::cancelled, "cancelled by interrupt() before it was sent");
  for (auto& [id, cb] : never_sent)
    cb(protocol::reply{e});
  return in_flight;
}

void request_table::attach(std::shared_ptr<io::connection> c) {
  std::lock_guard<std::mutex> g{mu_};
  conn_ = std::move(c);
  area_.reset();  // the runner says in its `ready` whether it uses the new one
}

void request_table::open() {
  std::lock_guard<std::mutex> g{mu_};
  if (open_ || refused_ || !conn_)
    return;
  open_ = true;
  stash_limit_ = 0;
  pump_locked();
}

void request_table::restarting(const error& cause, std::size_t stash) {
  taken lost;
  std::vector<error> why;
  {
    std::lock_guard<std::mutex> g{mu_};
    stash_limit_ = std::max<std::size_t>(stash, 1);
    envs_.lose_non_durable(cause);
    // Queued requests on lost envs cannot run on the next process.
    std::deque<queued> keep;
    for (auto& q : queue_) {
      auto i = q.id != 0 ? pending_.find(q.id) : pending_.end();
      if (i == pending_.end()) {
        keep.push_back(std::move(q));
        continue;
      }
      auto err = q.env != 0 ? envs_.error_of(q.env) : std::nullopt;
      if (!err) {
        keep.push_back(std::move(q));
        continue;
      }
      lost.emplace_back(q.id, std::move(i->second.cb));
      why.push_back(*err);
      if (i->second.due != deadlines_.end())
        deadlines_.erase(i->second.due);
      pending_.erase(i);
      --queued_requests_;
    }
    queue_ = std::move(keep);
    // Notifications (drop_env) of the old process mean nothing to the next one.
    queue_.erase(std::remove_if(queue_.begin(), queue_.end(), [](auto& q) { return q.id == 0; }),
                 queue_.end());
  }
  for (std::size_t k = 0; k < lost.size(); ++k)
    lost[k].second(protocol::reply{why[k]});
}

std::optional<error> request_table::env_error(std::uint64_t id) const {
  std::lock_guard<std::mutex> g{mu_};
  return envs_.error_of(id);
}

std::vector<owned_request> request_table::rebuild_plan() const {
  std::lock_guard<std::mutex> g{mu_};
  return envs_.rebuild_plan();
}

void request_table::env_rebuild_failed(std::uint64_t id, const error& cause) {
  std::lock_guard<std::mutex> g{mu_};
  envs_.rebuild_failed(id, cause);
}

request_table::completion request_table::recording(const request& r, completion done) {
  auto id = r.env;
  if (r.op == request::op_t::make_env) {
    {
      std::lock_guard<std::mutex> g{mu_};
      envs_.making(r);
    }
    return [self = shared_from_this(), id, done = std::move(done)](protocol::reply rep) {
      {
        std::lock_guard<std::mutex> g{self->mu_};
        self->envs_.made(id, rep.result.has_value());
      }
      done(std::move(rep));
    };
  }
  {
    std::lock_guard<std::mutex> g{mu_};
    if (!envs_.durable(id))
      return done;
  }
  return [self = shared_from_this(), id, step = owned_request::of(r),
          done = std::move(done)](protocol::reply rep) mutable {
    if (rep.result) {
      std::lock_guard<std::mutex> g{self->mu_};
      self->envs_.replayed(id, std::move(step));
    }
    done(std::move(rep));
  };
}

void request_table::refuse(error e, bool stopping) {
  taken failed;
  {
    std::lock_guard<std::mutex> g{mu_};
    if (!refused_)
      refused_ = std::move(e);
    stopping_ = stopping_ || stopping;
    open_ = false;
    // Requests never sent are answered now; requests in flight get their answer or fail at
    // the exit. Queued notifications go too: nothing more is written.
    failed = take_queued_locked();
    queue_.clear();
  }
  for (auto& [id, cb] : failed)
    cb(protocol::reply{*refused_});
}

void request_table::connection_lost(const error& e, bool keep_queued) {
  taken failed;
  {
    std::lock_guard<std::mutex> g{mu_};
    if (conn_) {
      auto c = conn_->stats();
      past_.bytes_in += c.bytes_in;
      past_.bytes_out += c.bytes_out;
      past_.busy_transitions += c.busy_transitions;
    }
    conn_.reset();
    area_.reset();  // values keep what they hold of it
    open_ = false;
    unacknowledged_.clear();
    for (auto i = pending_.begin(); i != pending_.end();) {
      if (!i->second.sent && keep_queued) {
        ++i;
        continue;
      }
      failed.emplace_back(i->first, std::move(i->second.cb));
      if (i->second.due != deadlines_.end())
        deadlines_.erase(i->second.due);
      i = pending_.erase(i);
    }
    inflight_ = 0;
    if (!keep_queued) {
      queue_.clear();
      queued_requests_ = 0;
    }
  }
  for (auto& [id, cb] : failed)
    cb(protocol::reply{e});
}

void request_table::on_response(protocol::message& m) {
  completion cb;
  bool stop_cancelled = false;
  std::shared_ptr<io::shared_area> area;
  {
    std::lock_guard<std::mutex> g{mu_};
    area = area_;
    if (area && m.shared)
      ++shared_in_;
    auto i = pending_.find(m.id);
    if (i == pending_.end()) {
      if (unacknowledged_.erase(m.id) > 0) {  // a late reply to a request that timed out
        --inflight_;
        pump_locked();
      }
    } else {
      cb = std::move(i->second.cb);
      stop_cancelled = stopping_ && !i->second.cancel_sent;
      forget_locked(i);
      ++served_;
      pump_locked();
    }
  }
  // The runner is done with the arguments it had in shared memory (outside the table's lock:
  // giving pages back may take a while).
  if (area)
    area->release(m.id);
  if (!cb)
    return;
  auto rep = protocol::parse_response(m);
  if (!rep.result)
    vet_runner_error(rep, stop_cancelled);
  cb(std::move(rep));
}

void request_table::on_drained() {
  std::lock_guard<std::mutex> g{mu_};
  pump_locked();
}

void request_table::vet_runner_error(protocol::reply& rep, bool stop_cancelled) const {
  auto& e = rep.result.error();
  switch (e.code) {
    // What the runner may answer with (python/pyvisor/_errors.py and _runner.py).
    case errc::python_exception:
    case errc::syntax_error:
    case errc::env_not_found:
    case errc::env_key_not_found:
    case errc::init_failed:
    case errc::unserializable:
    case errc::protocol_error:
    case errc::invalid_argument:
      return;
    case errc::cancelled:
      // The runner cancels what is still running when it shuts down; for the caller that is
      // a stop, not an interrupt (nobody cancelled this request).
      if (stop_cancelled) {
        std::lock_guard<std::mutex> g{mu_};
        e = make_error(errc::interpreter_down,
                       "interpreter '" + label_ + "' was stopped while the request ran");
      }
      return;
    default:
      e = make_error(errc::protocol_error,
                     "the runner answered with an error code it may not send ('" +
                       std::string{to_string(e.code)} + "'): " + e.message);
      return;
  }
}

void request_table::set_label(std::string label) {
  std::lock_guard<std::mutex> g{mu_};
  label_ = std::move(label);
}

interpreter_stats request_table::stats() const {
  std::lock_guard<std::mutex> g{mu_};
  interpreter_stats s;
  io::connection::counters c = past_;
  if (conn_) {
    auto now = conn_->stats();
    c.queued_bytes = now.queued_bytes;
    c.bytes_in += now.bytes_in;
    c.bytes_out += now.bytes_out;
    c.busy_transitions += now.busy_transitions;
  }
  s.queued_bytes = c.queued_bytes;
  s.in_flight = inflight_;
  s.admission_queue = queued_requests_;
  s.busy_transitions = c.busy_transitions;
  s.requests_served = served_;
  s.overloaded = overloaded_;
  s.host_calls = host_handled_.load();
  s.bytes_in = c.bytes_in;
  s.bytes_out = c.bytes_out;
  s.shared_memory_out = shared_out_;
  s.shared_memory_in = shared_in_;
  s.replies_read_by_caller = caller_read_.load(std::memory_order_relaxed);
  return s;
}

} // namespace pyvisor::interp
