#pragma once

// Shared by the pool tests (tests/pool), which drive the pool layer (actors/pool) without
// processes:
//
//  - small helpers: the test keys, breaker policies, a check that a reason mentions a word, and
//    submitting a request to a dispatcher whose answer lands in a cell;
//  - the pool actor's fixture: the pool actor under CAF's deterministic test_coordinator with
//    simulated time. Its workers are stand-in actors that speak the child protocol
//    (core/child_protocol.hpp): they start, come up, fail their start or crash when the test
//    says so, and log what they were told.
//
// No sleeps and no real timers: simulated time moves only through advance(), which steps the
// actor clock from one pending timeout to the next, and every loop is bounded.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "core/child_protocol.hpp"
#include "io/io_loop.hpp"
#include "pool/dispatcher.hpp"
#include "pool/pool_actor.hpp"
#include "pool/worker.hpp"
#include "pyvisor/actor_interface.hpp"
#include "pyvisor/pool.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::pool_stats)

namespace pyvisor::test {

using namespace std::chrono_literals;
using core::child_down_atom;
using core::child_start_atom;
using core::child_stop_atom;
using core::child_up_atom;

// =================================================================================================
// Small helpers
// =================================================================================================

inline std::string key_of(int i) {
  return "user:" + std::to_string(i);
}

inline bool mentions(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

inline breaker_policy breaker_of(std::size_t max_failures, std::chrono::milliseconds reset,
                                 std::chrono::milliseconds max_reset) {
  breaker_policy p;
  p.max_failures = max_failures;
  p.reset_timeout = reset;
  p.max_reset_timeout = max_reset;
  return p;
}

/// A dispatcher's answer to one request, filled in by submit().
struct answer {
  bool done = false;
  std::optional<error> err;
  std::uint32_t worker = 0;  ///< 0: no worker involved
};

/// Submits a request to `d`; the answer lands in the returned cell.
inline std::shared_ptr<answer> submit(pooling::dispatcher& d, std::string key = {},
                                      std::vector<std::uint32_t>* order = nullptr,
                                      std::uint32_t tag = 0) {
  auto a = std::make_shared<answer>();
  interp::request r;
  r.text = "1 + 1";
  d.submit(r, interp::deadline::none(), key,
           [a, order, tag](protocol::reply rep, const std::shared_ptr<pooling::worker>& w) {
             a->done = true;
             if (!rep.result)
               a->err = rep.result.error();
             a->worker = w ? w->number : 0;
             if (order != nullptr)
               order->push_back(tag);
           });
  return a;
}

// =================================================================================================
// The pool actor's fixture
// =================================================================================================

using up_atom = caf::atom_constant<caf::atom("t_up")>;
using fail_atom = caf::atom_constant<caf::atom("t_fail")>;
using end_atom = caf::atom_constant<caf::atom("t_end")>;
using leave_atom = caf::atom_constant<caf::atom("t_leave")>;

/// What the stand-in workers did, and how they behave.
struct world {
  /// In order: "start w1", "up w1", "fail w1", "end w1" (crash), "exit w1" (told to stop for
  /// good), "gone w1" (its actor terminated).
  std::vector<std::string> log;
  std::map<std::uint32_t, int> starts;
  std::map<std::uint32_t, caf::actor> actors;
  std::vector<std::pair<std::uint32_t, std::uint32_t>> made;  ///< factory calls (number, ring slot)
  bool hold = false;      ///< a start waits for the test's up/fail instead of coming up
  bool fail_all = false;  ///< every start fails (start_failed)
  bool linger = false;    ///< told to stop for good, the actor waits for leave_atom to quit
  int refuse_make = 0;    ///< the factory refuses this many more workers
  int next_pid = 100;
};

class fake_worker : public caf::event_based_actor {
public:
  fake_worker(caf::actor_config& cfg, std::shared_ptr<world> w, std::string id, caf::actor_addr pool)
    : caf::event_based_actor(cfg), w_(std::move(w)), id_(std::move(id)), pool_(std::move(pool)) {}

  caf::behavior make_behavior() override {
    attach_functor([w = w_, id = id_] { w->log.push_back("gone " + id); });
    set_exit_handler([this](caf::exit_msg& m) {
      w_->log.push_back("exit " + id_);
      if (state_ != idle)
        down(exit_kind::shutdown, make_error(errc::interpreter_down, id_ + " stopped"));
      if (w_->linger) {
        lingering_ = true;
        return;
      }
      quit(m.reason);
    });
    return {
      [this](child_start_atom) {
        w_->log.push_back("start " + id_);
        ++w_->starts[number()];
        if (state_ != idle)
          ADD_FAILURE() << id_ << ": child_start while an incarnation runs";
        state_ = starting;
        if (w_->hold)
          return;
        if (w_->fail_all)
          fail();
        else
          come_up();
      },
      [this](up_atom) {
        if (state_ == starting)
          come_up();
      },
      [this](fail_atom) {
        if (state_ == starting)
          fail();
      },
      [this](end_atom, exit_kind k) {
        if (state_ != running)
          return;
        w_->log.push_back("end " + id_);
        down(k, make_error(errc::interpreter_exited, id_ + " ended"));
      },
      [this](child_stop_atom, const shutdown_policy&) {
        if (state_ != idle)
          down(exit_kind::shutdown, make_error(errc::interpreter_down, id_ + " stopped"));
      },
      [this](leave_atom) {
        if (lingering_)
          quit(caf::exit_reason::user_shutdown);
      },
      [this](interrupt_atom) {
        w_->log.push_back("interrupt " + id_);
        return std::size_t{1};
      },
    };
  }

private:
  enum { idle, starting, running } state_ = idle;

  std::uint32_t number() const {
    return static_cast<std::uint32_t>(std::stoul(id_.substr(1)));
  }

  void come_up() {
    w_->log.push_back("up " + id_);
    state_ = running;
    if (auto p = caf::actor_cast<caf::actor>(pool_))
      send(p, child_up_atom::value, address(), w_->next_pid++);
  }

  void fail() {
    w_->log.push_back("fail " + id_);
    down(exit_kind::start_failed, make_error(errc::init_failed, id_ + ": init raised"));
  }

  void down(exit_kind k, error e) {
    state_ = idle;
    int code = k == exit_kind::normal ? 0 : 1;
    if (auto p = caf::actor_cast<caf::actor>(pool_))
      send(p, child_down_atom::value, address(), exit_report{k, code, 0, std::move(e)});
  }

  std::shared_ptr<world> w_;
  std::string id_;
  caf::actor_addr pool_;  // weak, as a real child holds its supervisor
  bool lingering_ = false;
};

struct test_config : caf::actor_system_config {
  test_config() {
    set("scheduler.policy", caf::atom("testing"));
    set("logger.verbosity", caf::atom("quiet"));
  }
};

/// A pool of `workers` with deterministic timing: backoff 100 ms doubling, no jitter; breaker
/// 3 failures, 1 s doubling up to 3 s; no autoscaling, no recycling.
inline pool_options options(std::size_t workers) {
  pool_options o;
  o.name = "test";
  o.workers = workers;
  o.backoff = backoff_policy{100ms, 30s, 0.0, 60s};
  o.breaker = breaker_of(3, 1s, 3s);
  return o;
}

inline std::string describe(const pool_event& e) {
  std::string s{pyvisor::to_string(e.kind)};
  if (!e.worker.empty())
    s += " " + e.worker;
  if (e.kind == pool_event::worker_restarting || e.kind == pool_event::breaker_opened)
    s += " " + std::to_string(e.delay.count()) + "ms";
  return s;
}

class pool_actor_test : public ::testing::Test {
protected:
  io::io_loop loop_;  // first: outlives the dispatcher (its timer belongs to the loop)
  test_config cfg_;
  caf::actor_system sys_{cfg_};
  caf::scheduler::test_coordinator& sched_ =
    dynamic_cast<caf::scheduler::test_coordinator&>(sys_.scheduler());
  std::shared_ptr<world> w_ = std::make_shared<world>();
  std::vector<pool_event> events_;
  std::vector<pooling::pool_status> statuses_;
  std::vector<std::uint32_t> gone_;
  std::shared_ptr<pooling::dispatcher> disp_;
  caf::actor pool_;
  caf::scoped_actor self_{sys_};

  void TearDown() override {
    if (pool_)
      anon_send_exit(pool_, caf::exit_reason::kill);
    for (auto& [n, a] : w_->actors)
      anon_send_exit(a, caf::exit_reason::kill);
    sched_.run();
    w_->actors.clear();
  }

  /// Spawns the pool actor; with `parent` set it is a child of that actor (it waits for
  /// child_start).
  void start(pool_options o, const caf::actor& parent = caf::actor{}) {
    pooling::dispatcher::config dc;
    dc.name = o.name;
    dc.policy = o.dispatch;
    dc.max_inflight_per_worker = o.max_inflight_per_worker;
    dc.max_queued = o.max_queued;
    dc.queue_timeout = o.queue_timeout;
    dc.recycle = o.recycle;
    disp_ = pooling::dispatcher::make(loop_, dc);
    pooling::pool_config pc;
    pc.opts = std::move(o);
    pc.make = [this](std::uint32_t n, std::uint32_t ring,
                     const caf::actor& pool) -> expected<std::shared_ptr<pooling::worker>> {
      w_->made.emplace_back(n, ring);
      if (w_->refuse_make > 0) {
        --w_->refuse_make;
        return make_error(errc::spawn_failed, "w" + std::to_string(n) + ": refused");
      }
      auto w = std::make_shared<pooling::worker>();
      w->number = n;
      w->id = "w" + std::to_string(n);
      w->ring_slot = ring;
      w->actor = sys_.spawn<fake_worker>(w_, w->id, pool.address());
      w_->actors[n] = w->actor;
      return w;
    };
    pc.disp = disp_;
    pc.on_event = [this](const pool_event& e) { events_.push_back(e); };
    pc.on_status = [this](const pooling::pool_status& s) { statuses_.push_back(s); };
    pc.on_worker_gone = [this](std::uint32_t n) { gone_.push_back(n); };
    pc.seed = 42;
    pc.parent = parent.address();
    pool_ = pooling::spawn_pool_actor(sys_, std::move(pc));
    sched_.run();
  }

  /// Moves simulated time on by `d`, stopping at every timeout due on the way (so timers set
  /// while handling one fire in turn), and runs everything that becomes ready.
  void advance(caf::timespan d) {
    auto& clk = sched_.clock();
    const auto target = clk.now() + d;
    for (int guard = 0; guard < 100000; ++guard) {
      const auto& s = clk.schedule();
      if (s.empty() || s.begin()->first > target) {
        if (target > clk.now())
          sched_.advance_time(target - clk.now());
        sched_.run();
        return;
      }
      auto next = s.begin()->first;
      sched_.advance_time(next > clk.now() ? next - clk.now() : caf::timespan{0});
      sched_.run();
    }
    FAIL() << "advance: timers keep firing";
  }

  template <class... Ts>
  void tell(std::uint32_t n, Ts... xs) {
    caf::anon_send(w_->actors.at(n), xs...);
    sched_.run();
  }
  void up(std::uint32_t n) { tell(n, up_atom::value); }
  void fail(std::uint32_t n) { tell(n, fail_atom::value); }
  void crash(std::uint32_t n) { tell(n, end_atom::value, exit_kind::crash); }
  void leave(std::uint32_t n) { tell(n, leave_atom::value); }

  std::vector<std::string> take_log() {
    auto l = std::move(w_->log);
    w_->log.clear();
    return l;
  }

  std::vector<std::string> take_events() {
    std::vector<std::string> out;
    for (auto& e : events_)
      out.push_back(describe(e));
    events_.clear();
    return out;
  }

  /// The reason of the last event of kind `k` ("<none>" when there is none).
  std::string last_reason(pool_event::kind_t k) const {
    for (auto i = events_.rbegin(); i != events_.rend(); ++i)
      if (i->kind == k)
        return i->reason;
    return "<none>";
  }

  int count_events(pool_event::kind_t k) const {
    return static_cast<int>(std::count_if(events_.begin(), events_.end(),
                                          [&](const pool_event& e) { return e.kind == k; }));
  }

  const pooling::pool_status& status() {
    static const pooling::pool_status none;
    if (statuses_.empty()) {
      ADD_FAILURE() << "no status published";
      return none;
    }
    return statuses_.back();
  }

  std::size_t starts() {
    std::size_t n = 0;
    for (auto& [k, v] : w_->starts)
      n += static_cast<std::size_t>(v);
    return n;
  }

  bool has_reply() { return !self_->mailbox().empty(); }

  /// Sends a request answered `bool true` or an error; returns the error (or none).
  template <class... Ts>
  std::optional<error> ask(Ts&&... xs) {
    auto h = self_->request(pool_, caf::infinite, std::forward<Ts>(xs)...);
    sched_.run();
    if (!has_reply()) {
      ADD_FAILURE() << "the pool did not answer";
      return make_error(errc::none, "no answer");
    }
    std::optional<error> out;
    h.receive([](bool b) { EXPECT_TRUE(b); }, [&](caf::error& e) { out = to_error(e); });
    return out;
  }

  pool_stats stats() {
    pool_stats out;
    auto h = self_->request(pool_, caf::infinite, pool_stats_atom::value);
    sched_.run();
    if (!has_reply()) {
      ADD_FAILURE() << "the pool did not answer";
      return out;
    }
    h.receive([&](pool_stats& p) { out = std::move(p); },
              [&](caf::error& e) { ADD_FAILURE() << sys_.render(e); });
    return out;
  }
};

} // namespace pyvisor::test
