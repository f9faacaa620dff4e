// The pool layer (actors/pool) without processes:
//
//  - the pure policies as plain objects driven with chosen inputs: the consistent-hash ring,
//    the latency histogram, the autoscaler (with simulated steady_clock time points) and the
//    start circuit breaker;
//  - the dispatcher with table-less test workers (it answers them interpreter_down on the spot,
//    on the calling thread), for routing, queueing and the breaker/stop refusals;
//  - the pool actor under CAF's deterministic test_coordinator with simulated time. Its workers
//    are stand-in actors that speak the child protocol (core/child_protocol.hpp): they start,
//    come up, fail their start or crash when the test says so, and log what they were told.
//
// No sleeps and no real timers: simulated time moves only through advance(), which steps the
// actor clock from one pending timeout to the next, and every loop is bounded. Tests whose
// comment says "Regression" pin bugs this file found in the pool actor.

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "core/child_protocol.hpp"
#include "io/io_loop.hpp"
#include "pool/autoscaler.hpp"
#include "pool/dispatcher.hpp"
#include "pool/hash_ring.hpp"
#include "pool/latency_histogram.hpp"
#include "pool/pool_actor.hpp"
#include "pool/start_breaker.hpp"
#include "pool/worker.hpp"
#include "pyvisor/actor_interface.hpp"
#include "pyvisor/pool.hpp"

using namespace pyvisor;
using namespace std::chrono_literals;
using core::child_down_atom;
using core::child_start_atom;
using core::child_stop_atom;
using core::child_up_atom;

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::pool_stats)

// =================================================================================================
// hash_ring
// =================================================================================================

namespace {

using pooling::hash_ring;
using usable_fn = std::function<bool(std::uint32_t)>;

const usable_fn every_slot = [](std::uint32_t) { return true; };
constexpr int n_keys = 10000;

std::string key_of(int i) {
  return "user:" + std::to_string(i);
}

hash_ring ring_of(std::initializer_list<std::uint32_t> slots) {
  hash_ring r;
  for (auto s : slots)
    r.add(s);
  return r;
}

/// The owner of every test key (0: none).
std::vector<std::uint32_t> owners(const hash_ring& r, const usable_fn& usable = every_slot) {
  std::vector<std::uint32_t> out;
  out.reserve(n_keys);
  for (int i = 0; i < n_keys; ++i) {
    auto o = r.find(key_of(i), usable);
    out.push_back(o ? *o : 0);
  }
  return out;
}

} // namespace

TEST(hash_ring, spreads_keys_roughly_evenly_over_the_slots) {
  auto r = ring_of({1, 2, 3, 4});
  std::map<std::uint32_t, int> count;
  for (auto o : owners(r))
    ++count[o];
  ASSERT_EQ(count.size(), 4u);
  EXPECT_EQ(count.count(0), 0u) << "every key has an owner";
  for (auto& [slot, n] : count) {
    EXPECT_GE(n, n_keys * 15 / 100) << "slot " << slot;
    EXPECT_LE(n, n_keys * 35 / 100) << "slot " << slot;
  }
}

TEST(hash_ring, the_same_key_always_maps_to_the_same_slot) {
  auto a = ring_of({1, 2, 3, 4});
  auto b = ring_of({4, 3, 2, 1});  // the order of adding does not matter
  auto first = owners(a);
  EXPECT_EQ(owners(a), first);
  EXPECT_EQ(owners(b), first);
  EXPECT_EQ(hash_ring::hash("user:7"), hash_ring::hash(std::string{"user:"} + "7"));
  EXPECT_NE(hash_ring::hash("user:7"), hash_ring::hash("user:8"));
}

TEST(hash_ring, removing_a_slot_moves_only_its_keys) {
  auto r = ring_of({1, 2, 3, 4});
  auto before = owners(r);
  r.remove(3);
  auto after = owners(r);
  int moved = 0;
  std::set<std::uint32_t> heirs;
  for (int i = 0; i < n_keys; ++i) {
    if (before[i] == 3) {
      ++moved;
      EXPECT_NE(after[i], 3u);
      EXPECT_NE(after[i], 0u);
      heirs.insert(after[i]);
    } else {
      EXPECT_EQ(after[i], before[i]) << key_of(i) << " belonged to " << before[i];
    }
  }
  EXPECT_GT(moved, 0);
  EXPECT_GE(heirs.size(), 2u) << "with many points per slot, a removed slot's keys spread out";
  r.add(3);  // back: exactly the original mapping
  EXPECT_EQ(owners(r), before);
}

TEST(hash_ring, an_unusable_slot_hands_its_keys_on_and_leaves_the_others_alone) {
  auto r = ring_of({1, 2, 3, 4});
  auto before = owners(r);
  auto after = owners(r, [](std::uint32_t s) { return s != 2; });
  int moved = 0;
  for (int i = 0; i < n_keys; ++i) {
    if (before[i] == 2) {
      ++moved;
      EXPECT_NE(after[i], 2u);
      EXPECT_NE(after[i], 0u);
    } else {
      EXPECT_EQ(after[i], before[i]) << key_of(i);
    }
  }
  EXPECT_GT(moved, 0);
  // Skipping slot 2 routes as if it had been removed.
  auto without = ring_of({1, 3, 4});
  EXPECT_EQ(owners(without), after);
}

TEST(hash_ring, an_empty_ring_or_no_usable_slot_gives_nullopt) {
  hash_ring r;
  EXPECT_TRUE(r.empty());
  EXPECT_FALSE(r.find("k", every_slot));
  r.add(1);
  r.add(2);
  EXPECT_FALSE(r.empty());
  int asked = 0;
  EXPECT_FALSE(r.find("k", [&](std::uint32_t) {
    ++asked;
    return false;
  }));
  EXPECT_EQ(asked, 2) << "each slot is asked once, not once per point";
  r.remove(1);
  r.remove(2);
  EXPECT_TRUE(r.empty());
  EXPECT_FALSE(r.find("k", every_slot));
}

// =================================================================================================
// latency_histogram
// =================================================================================================

namespace {
using hist = pooling::latency_histogram;
}

TEST(latency_histogram, buckets_are_monotone_and_upper_edges_within_13_percent) {
  EXPECT_EQ(hist::bucket_of(0), 0);
  EXPECT_EQ(hist::bucket_of(1), 0);
  int prev = 0;
  int checked = 0;
  auto check = [&](std::uint64_t us) {
    int b = hist::bucket_of(us);
    ASSERT_GE(b, 0);
    ASSERT_LT(b, hist::buckets);
    ASSERT_GE(b, prev) << us << " us";
    prev = b;
    auto edge = hist::upper_edge(b);
    ASSERT_GT(edge, us) << "the upper edge bounds every value of its bucket (" << us << " us)";
    if (us >= 8) {  // below 8 us the integer edges are coarser than 1/8
      ASSERT_LE(static_cast<double>(edge - us), 0.13 * static_cast<double>(us)) << us << " us";
    }
    ++checked;
  };
  for (std::uint64_t us = 1; us <= 100000; ++us)
    check(us);
  for (double x = 100001; x < std::ldexp(1.0, 30); x *= 1.001)
    check(static_cast<std::uint64_t>(x));
  check((std::uint64_t{1} << 30) - 1);
  EXPECT_GT(checked, 109000);
  for (int b = 1; b < hist::buckets; ++b)
    EXPECT_GE(hist::upper_edge(b), hist::upper_edge(b - 1)) << "bucket " << b;
  // Beyond ~18 min everything lands in the last bucket.
  EXPECT_EQ(hist::bucket_of(std::uint64_t{1} << 40), hist::buckets - 1);
}

namespace {

void expect_near_rel(std::chrono::microseconds got, double want, double rel, const char* what) {
  EXPECT_LE(std::abs(static_cast<double>(got.count()) - want), rel * want)
    << what << ": " << got.count() << " us, want ~" << want << " us";
}

} // namespace

TEST(latency_histogram, percentiles_of_a_uniform_distribution) {
  hist h;
  for (int us = 1; us <= 1000; ++us)
    h.add(std::chrono::microseconds{us});
  auto s = h.summary();
  EXPECT_EQ(s.count, 1000u);
  EXPECT_EQ(s.max, 1000us);
  expect_near_rel(s.p50, 500, 0.10, "p50");
  expect_near_rel(s.p90, 900, 0.10, "p90");
  expect_near_rel(s.p99, 990, 0.10, "p99");
  EXPECT_LE(s.p50, s.p90);
  EXPECT_LE(s.p90, s.p99);
  EXPECT_LE(s.p99, s.max);
}

TEST(latency_histogram, percentiles_of_a_bimodal_distribution_and_an_exact_max) {
  hist h;
  for (int i = 0; i < 950; ++i)
    h.add(200us);
  for (int i = 0; i < 49; ++i)
    h.add(50ms);
  h.add(std::chrono::microseconds{123457});  // the one slowest, not on any bucket edge
  auto s = h.summary();
  EXPECT_EQ(s.count, 1000u);
  expect_near_rel(s.p50, 200, 0.10, "p50");
  expect_near_rel(s.p90, 200, 0.10, "p90");
  expect_near_rel(s.p99, 50000, 0.10, "p99");
  EXPECT_EQ(s.max, std::chrono::microseconds{123457});
}

TEST(latency_histogram, percentiles_never_exceed_the_max) {
  hist h;
  h.add(std::chrono::microseconds{1001});  // its bucket's upper edge is 1024 us
  auto s = h.summary();
  EXPECT_EQ(s.max, std::chrono::microseconds{1001});
  EXPECT_EQ(s.p50, std::chrono::microseconds{1001});
  EXPECT_EQ(s.p99, std::chrono::microseconds{1001});
  hist tiny;
  tiny.add(-5ns);  // clock skew: counted, as 0
  tiny.add(500ns);
  auto t = tiny.summary();
  EXPECT_EQ(t.count, 2u);
  EXPECT_EQ(t.max, 0us);
  EXPECT_EQ(t.p99, 0us);
}

TEST(latency_histogram, an_empty_summary_is_all_zeros) {
  hist h;
  auto s = h.summary();
  EXPECT_EQ(s.count, 0u);
  EXPECT_EQ(s.p50, 0us);
  EXPECT_EQ(s.p90, 0us);
  EXPECT_EQ(s.p99, 0us);
  EXPECT_EQ(s.max, 0us);
}

// =================================================================================================
// autoscaler
// =================================================================================================

namespace {

using pooling::autoscaler;
using steady_tp = std::chrono::steady_clock::time_point;

steady_tp at(std::chrono::milliseconds t) {
  return steady_tp{t};
}

autoscale_policy scale_policy() {
  autoscale_policy p;
  p.inflight_per_worker = 1.0;
  p.up_window = 1s;
  p.idle_timeout = 10s;
  p.check_interval = 250ms;
  return p;
}

bool mentions(const std::string& s, const std::string& what) {
  return s.find(what) != std::string::npos;
}

} // namespace

TEST(autoscaler, scales_up_only_after_a_whole_window_of_queueing_and_never_above_max) {
  autoscaler a{scale_policy(), 1, 3};
  autoscaler::load busy{2, 1, 1, 1};  // 2 queued, 1 in flight, 1 ready, 1 worker
  EXPECT_EQ(a.check(at(0ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(500ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(999ms), busy).delta, 0);
  auto d = a.check(at(1000ms), busy);
  EXPECT_EQ(d.delta, 1);
  EXPECT_TRUE(mentions(d.reason, "queued")) << d.reason;
  busy.workers = 2;
  EXPECT_EQ(a.check(at(1250ms), busy).delta, 0) << "the next step needs another whole window";
  EXPECT_EQ(a.check(at(1999ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(2000ms), busy).delta, 1);
  busy.workers = 3;  // at max
  for (auto t = 2000ms; t <= 20000ms; t += 250ms)
    EXPECT_EQ(a.check(at(t), busy).delta, 0) << t.count() << " ms";
}

TEST(autoscaler, in_flight_per_ready_worker_above_the_limit_is_pressure_too) {
  autoscaler a{scale_policy(), 1, 3};
  autoscaler::load at_limit{0, 2, 2, 2};  // 1.0 per worker: not above
  EXPECT_EQ(a.check(at(0ms), at_limit).delta, 0);
  EXPECT_EQ(a.check(at(5000ms), at_limit).delta, 0);
  autoscaler::load none_ready{0, 4, 0, 2};  // nothing ready: no ratio, and nothing queued
  EXPECT_EQ(a.check(at(6000ms), none_ready).delta, 0);
  EXPECT_EQ(a.check(at(9000ms), none_ready).delta, 0);
  autoscaler::load above{0, 3, 2, 2};  // 1.5 per worker
  EXPECT_EQ(a.check(at(10000ms), above).delta, 0);
  EXPECT_EQ(a.check(at(10999ms), above).delta, 0);
  auto d = a.check(at(11000ms), above);
  EXPECT_EQ(d.delta, 1);
  EXPECT_TRUE(mentions(d.reason, "in flight")) << d.reason;
}

TEST(autoscaler, interrupted_pressure_starts_the_window_over) {
  autoscaler a{scale_policy(), 1, 3};
  autoscaler::load busy{1, 1, 1, 1};
  autoscaler::load calm{0, 1, 1, 1};  // 1 in flight on 1 ready: not above 1.0, not idle
  EXPECT_EQ(a.check(at(0ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(600ms), calm).delta, 0);
  EXPECT_EQ(a.check(at(700ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(1000ms), busy).delta, 0) << "pressure since 700 ms only";
  EXPECT_EQ(a.check(at(1699ms), busy).delta, 0);
  EXPECT_EQ(a.check(at(1700ms), busy).delta, 1);
}

TEST(autoscaler, scales_down_one_step_per_idle_timeout_and_never_below_min) {
  autoscaler a{scale_policy(), 1, 3};
  autoscaler::load idle{0, 0, 3, 3};
  EXPECT_EQ(a.check(at(0ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(9999ms), idle).delta, 0);
  auto d = a.check(at(10000ms), idle);
  EXPECT_EQ(d.delta, -1);
  EXPECT_TRUE(mentions(d.reason, "idle")) << d.reason;
  idle = {0, 0, 2, 2};
  EXPECT_EQ(a.check(at(10001ms), idle).delta, 0) << "one step per idle_timeout";
  EXPECT_EQ(a.check(at(19999ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(20000ms), idle).delta, -1);
  idle = {0, 0, 1, 1};  // at min
  for (auto t = 20000ms; t <= 100000ms; t += 2500ms)
    EXPECT_EQ(a.check(at(t), idle).delta, 0) << t.count() << " ms";
}

TEST(autoscaler, anything_in_flight_or_queued_interrupts_idleness) {
  autoscaler a{scale_policy(), 1, 3};
  autoscaler::load idle{0, 0, 3, 3};
  autoscaler::load one{0, 1, 3, 3};     // not pressure (1/3), not idle
  autoscaler::load queued{1, 0, 3, 3};  // pressure, not idle
  EXPECT_EQ(a.check(at(0ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(5000ms), one).delta, 0);
  EXPECT_EQ(a.check(at(6000ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(15999ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(15999ms), queued).delta, 0);
  EXPECT_EQ(a.check(at(16000ms), idle).delta, 0) << "idle only since 16 s";
  EXPECT_EQ(a.check(at(25999ms), idle).delta, 0);
  EXPECT_EQ(a.check(at(26000ms), idle).delta, -1);
}

TEST(autoscaler, corrects_counts_outside_the_bounds_at_once) {
  autoscaler a{scale_policy(), 2, 4};
  auto below = a.check(at(0ms), autoscaler::load{0, 0, 1, 1});
  EXPECT_EQ(below.delta, 1);
  EXPECT_TRUE(mentions(below.reason, "below min_workers")) << below.reason;
  auto above = a.check(at(1ms), autoscaler::load{5, 9, 5, 5});  // even under pressure
  EXPECT_EQ(above.delta, -1);
  EXPECT_TRUE(mentions(above.reason, "above max_workers")) << above.reason;
}

TEST(autoscaler, enabled_only_when_max_exceeds_min) {
  autoscaler fixed{scale_policy(), 2, 2};
  EXPECT_FALSE(fixed.enabled());
  autoscaler a{scale_policy(), 1, 3};
  EXPECT_TRUE(a.enabled());
  EXPECT_EQ(a.min_workers(), 1u);
  EXPECT_EQ(a.max_workers(), 3u);
  a.set_bounds(3, 3);
  EXPECT_FALSE(a.enabled());
  a.set_bounds(2, 3);
  EXPECT_TRUE(a.enabled());
}

// =================================================================================================
// start_breaker
// =================================================================================================

namespace {

using pooling::start_breaker;
using bstate = start_breaker::state;

breaker_policy breaker_of(std::size_t max_failures, std::chrono::milliseconds reset,
                          std::chrono::milliseconds max_reset) {
  breaker_policy p;
  p.max_failures = max_failures;
  p.reset_timeout = reset;
  p.max_reset_timeout = max_reset;
  return p;
}

error boom(int i) {
  return make_error(errc::init_failed, "boom " + std::to_string(i));
}

/// Opens `b` (policy 3 failures) from closed.
void open_it(start_breaker& b) {
  ASSERT_FALSE(b.start_failed(boom(1)));
  ASSERT_FALSE(b.start_failed(boom(2)));
  ASSERT_TRUE(b.start_failed(boom(3)));
  ASSERT_EQ(b.current(), bstate::open);
}

} // namespace

TEST(start_breaker, opens_after_max_failures_consecutive_failures) {
  start_breaker b{breaker_of(3, 1s, 5s)};
  EXPECT_EQ(b.current(), bstate::closed);
  EXPECT_FALSE(b.start_failed(boom(1)));
  EXPECT_FALSE(b.start_failed(boom(2)));
  EXPECT_EQ(b.current(), bstate::closed);
  auto d = b.start_failed(boom(3));
  ASSERT_TRUE(d);
  EXPECT_EQ(*d, 1s);
  EXPECT_EQ(b.current(), bstate::open);
  EXPECT_EQ(b.failures(), 3u);
  ASSERT_TRUE(b.last_error());
  EXPECT_EQ(b.last_error()->message, "boom 3");
  // Starts that were already running fail too: no second timer, still open.
  EXPECT_FALSE(b.start_failed(boom(4)));
  EXPECT_EQ(b.current(), bstate::open);
  EXPECT_EQ(b.last_error()->message, "boom 4");
}

TEST(start_breaker, a_success_in_between_resets_the_count) {
  start_breaker b{breaker_of(3, 1s, 5s)};
  EXPECT_FALSE(b.start_failed(boom(1)));
  EXPECT_FALSE(b.start_failed(boom(2)));
  EXPECT_FALSE(b.started()) << "it was closed: nothing to close";
  EXPECT_EQ(b.failures(), 0u);
  EXPECT_FALSE(b.start_failed(boom(3)));
  EXPECT_FALSE(b.start_failed(boom(4)));
  EXPECT_EQ(b.current(), bstate::closed);
  EXPECT_EQ(b.start_failed(boom(5)), std::optional<std::chrono::milliseconds>{1s});
}

TEST(start_breaker, failed_probes_double_the_timeout_up_to_the_cap) {
  start_breaker b{breaker_of(3, 1s, 5s)};
  open_it(b);
  b.probe();
  b.probe();  // a second timer changes nothing
  EXPECT_EQ(b.current(), bstate::half_open);
  std::vector<std::int64_t> delays;
  for (int i = 0; i < 5; ++i) {
    if (i > 0)
      b.probe();
    ASSERT_EQ(b.current(), bstate::half_open);
    auto d = b.start_failed(boom(10 + i));
    ASSERT_TRUE(d);
    EXPECT_EQ(b.current(), bstate::open);
    delays.push_back(d->count());
  }
  EXPECT_EQ(delays, (std::vector<std::int64_t>{2000, 4000, 5000, 5000, 5000}));
}

TEST(start_breaker, a_successful_probe_closes_it_and_resets_the_timeout) {
  start_breaker b{breaker_of(3, 1s, 60s)};
  open_it(b);
  b.probe();
  ASSERT_TRUE(b.start_failed(boom(4)));  // 2 s
  b.probe();
  ASSERT_TRUE(b.start_failed(boom(5)));  // 4 s
  b.probe();
  EXPECT_TRUE(b.started());
  EXPECT_EQ(b.current(), bstate::closed);
  EXPECT_EQ(b.failures(), 0u);
  b.probe();  // a stray timer while closed: nothing
  EXPECT_EQ(b.current(), bstate::closed);
  EXPECT_FALSE(b.start_failed(boom(6)));
  EXPECT_FALSE(b.start_failed(boom(7)));
  EXPECT_EQ(b.start_failed(boom(8)), std::optional<std::chrono::milliseconds>{1s})
    << "the timeout starts over at reset_timeout";
  b.probe();
  EXPECT_EQ(b.start_failed(boom(9)), std::optional<std::chrono::milliseconds>{2s});
}

TEST(start_breaker, one_failure_opens_with_max_failures_one) {
  start_breaker b{breaker_of(1, 250ms, 1s)};
  EXPECT_EQ(b.start_failed(boom(1)), std::optional<std::chrono::milliseconds>{250ms});
  b.probe();
  EXPECT_EQ(b.start_failed(boom(2)), std::optional<std::chrono::milliseconds>{500ms});
  EXPECT_TRUE(b.started()) << "a worker that came up while open closes it too";
}

// =================================================================================================
// dispatcher (table-less test workers: every request is answered interpreter_down at once)
// =================================================================================================

namespace {

struct answer {
  bool done = false;
  std::optional<error> err;
  std::uint32_t worker = 0;  ///< 0: no worker involved
};

/// Submits a request to `d`; the answer lands in the returned cell.
std::shared_ptr<answer> submit(pooling::dispatcher& d, std::string key = {},
                               std::vector<std::uint32_t>* order = nullptr, std::uint32_t tag = 0) {
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

std::shared_ptr<pooling::worker> table_less(std::uint32_t n) {
  auto w = std::make_shared<pooling::worker>();
  w->number = n;
  w->id = "w" + std::to_string(n);
  w->ring_slot = n;
  return w;
}

class dispatcher_test : public ::testing::Test {
protected:
  io::io_loop loop_;

  std::shared_ptr<pooling::dispatcher> make(dispatch_policy p, std::size_t workers,
                                            std::size_t max_queued = 100) {
    pooling::dispatcher::config c;
    c.name = "d";
    c.policy = p;
    c.max_queued = max_queued;
    auto d = pooling::dispatcher::make(loop_, c);
    for (std::uint32_t n = 1; n <= workers; ++n) {
      d->add(table_less(n));
      d->set_accepting(n, true);
    }
    return d;
  }
};

} // namespace

TEST_F(dispatcher_test, round_robin_takes_turns_and_table_less_workers_answer_interpreter_down) {
  auto d = make(dispatch_policy::round_robin, 3);
  std::vector<std::uint32_t> who;
  for (int i = 0; i < 6; ++i) {
    auto a = submit(*d);
    ASSERT_TRUE(a->done);
    ASSERT_TRUE(a->err);
    EXPECT_EQ(a->err->code, errc::interpreter_down);
    who.push_back(a->worker);
  }
  EXPECT_EQ(who, (std::vector<std::uint32_t>{1, 2, 3, 1, 2, 3}));
  auto s = d->stats();
  EXPECT_EQ(s.served, 6u);
  EXPECT_EQ(s.in_flight, 0u);
  EXPECT_EQ(s.accepting, 3u);
}

TEST_F(dispatcher_test, a_key_sticks_to_its_worker_and_moves_only_while_that_one_is_away) {
  auto d = make(dispatch_policy::key_affinity, 4);
  auto owner = [&](int i) { return submit(*d, key_of(i))->worker; };
  std::vector<std::uint32_t> before;
  std::set<std::uint32_t> used;
  for (int i = 0; i < 400; ++i) {
    before.push_back(owner(i));
    used.insert(before.back());
  }
  EXPECT_EQ(used.size(), 4u);
  for (int i = 0; i < 400; ++i)
    EXPECT_EQ(owner(i), before[i]) << key_of(i);
  d->set_accepting(2, false);  // restarting, say
  for (int i = 0; i < 400; ++i) {
    auto now = owner(i);
    if (before[i] == 2) {
      EXPECT_NE(now, 2u) << key_of(i);
    } else {
      EXPECT_EQ(now, before[i]) << key_of(i);
    }
  }
  d->set_accepting(2, true);
  for (int i = 0; i < 400; ++i)
    EXPECT_EQ(owner(i), before[i]) << key_of(i) << " is back on its worker";
}

TEST_F(dispatcher_test, requests_wait_until_a_worker_accepts_then_go_in_order) {
  auto d = make(dispatch_policy::least_loaded, 0);
  d->add(table_less(1));
  std::vector<std::uint32_t> order;
  std::vector<std::shared_ptr<answer>> as;
  for (std::uint32_t i = 1; i <= 3; ++i)
    as.push_back(submit(*d, {}, &order, i));
  for (auto& a : as)
    EXPECT_FALSE(a->done);
  EXPECT_EQ(d->stats().queued, 3u);
  d->set_accepting(1, true);
  EXPECT_EQ(order, (std::vector<std::uint32_t>{1, 2, 3}));
  for (auto& a : as)
    EXPECT_EQ(a->worker, 1u);
  EXPECT_EQ(d->stats().queued, 0u);
}

TEST_F(dispatcher_test, a_full_queue_answers_overloaded_at_once) {
  auto d = make(dispatch_policy::least_loaded, 0, 2);
  d->add(table_less(1));
  auto a = submit(*d);
  auto b = submit(*d);
  auto c = submit(*d);
  EXPECT_FALSE(a->done);
  EXPECT_FALSE(b->done);
  ASSERT_TRUE(c->done);
  ASSERT_TRUE(c->err);
  EXPECT_EQ(c->err->code, errc::overloaded);
  EXPECT_EQ(c->worker, 0u);
}

TEST_F(dispatcher_test, unavailable_refused_and_cancelled_answer_queued_and_new_requests) {
  auto d = make(dispatch_policy::least_loaded, 0);
  d->add(table_less(1));
  auto q1 = submit(*d);
  d->set_unavailable(make_error(errc::pool_unavailable, "breaker open"));
  ASSERT_TRUE(q1->done);
  EXPECT_EQ(q1->err->code, errc::pool_unavailable);
  auto now = submit(*d);
  ASSERT_TRUE(now->done);
  EXPECT_EQ(now->err->code, errc::pool_unavailable);
  d->set_unavailable(std::nullopt);
  auto q2 = submit(*d);
  auto q3 = submit(*d);
  EXPECT_FALSE(q2->done) << "waits again once the breaker closed";
  EXPECT_EQ(d->cancel_queued(), 2u);
  ASSERT_TRUE(q2->done);
  EXPECT_EQ(q2->err->code, errc::cancelled);
  auto q4 = submit(*d);
  d->refuse(make_error(errc::interpreter_down, "stopping"));
  ASSERT_TRUE(q4->done);
  EXPECT_EQ(q4->err->code, errc::interpreter_down);
  d->set_accepting(1, true);
  auto late = submit(*d);
  ASSERT_TRUE(late->done);
  EXPECT_EQ(late->err->code, errc::interpreter_down);
  EXPECT_EQ(late->worker, 0u) << "refused: no worker sees it";
}

// =================================================================================================
// The pool actor
// =================================================================================================

namespace {

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
pool_options options(std::size_t workers) {
  pool_options o;
  o.name = "test";
  o.workers = workers;
  o.backoff = backoff_policy{100ms, 30s, 0.0, 60s};
  o.breaker = breaker_of(3, 1s, 3s);
  return o;
}

std::string describe(const pool_event& e) {
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

  void start(pool_options o) {
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

} // namespace

TEST_F(pool_actor_test, workers_start_concurrently_and_the_status_counts_the_ready_ones) {
  w_->hold = true;
  start(options(3));
  // Every worker got child_start before any of them came up.
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w1", "start w2", "start w3"}));
  EXPECT_EQ(w_->made, (std::vector<std::pair<std::uint32_t, std::uint32_t>>{{1, 1}, {2, 2}, {3, 3}}));
  EXPECT_EQ(status().ready, 0u);
  EXPECT_TRUE(take_events().empty());
  up(2);
  EXPECT_EQ(status().ready, 1u);
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(describe(events_[0]), "worker_started w2");
  EXPECT_EQ(events_[0].pid, 100);
  EXPECT_FALSE(mentions(events_[0].reason, "restart")) << events_[0].reason;
  up(1);
  EXPECT_EQ(status().ready, 2u);
  up(3);
  EXPECT_EQ(status().ready, 3u);
  EXPECT_FALSE(status().breaker_open);
  EXPECT_FALSE(status().ended);
  auto s = stats();
  EXPECT_EQ(s.name, "test");
  EXPECT_EQ(s.workers, 3u);
  EXPECT_EQ(s.ready, 3u);
  ASSERT_EQ(s.per_worker.size(), 3u);
  for (auto& w : s.per_worker)
    EXPECT_EQ(w.state, worker_stats::ready) << w.id;
  EXPECT_EQ(starts(), 3u);
}

TEST_F(pool_actor_test, a_crashed_worker_restarts_at_once_then_after_the_backoff) {
  start(options(2));
  ASSERT_EQ(status().ready, 2u);
  take_log();
  take_events();
  crash(1);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"end w1", "start w1", "up w1"}));
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_exited w1", "worker_restarting w1 0ms",
                                                     "worker_started w1"}));
  ASSERT_GE(statuses_.size(), 2u);
  EXPECT_EQ(statuses_[statuses_.size() - 2].ready, 1u) << "one fewer while it restarted";
  EXPECT_EQ(status().ready, 2u);
  crash(1);  // again, before reset_after: the backoff sequence goes on
  EXPECT_EQ(take_log(), (std::vector<std::string>{"end w1"}));
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_exited w1", "worker_restarting w1 100ms"}));
  EXPECT_EQ(status().ready, 1u);
  auto mid = stats();
  ASSERT_EQ(mid.per_worker.size(), 2u);
  EXPECT_EQ(mid.per_worker[0].state, worker_stats::restarting);
  ASSERT_TRUE(mid.per_worker[0].last_exit);
  EXPECT_EQ(mid.per_worker[0].last_exit->kind, exit_kind::crash);
  advance(99ms);
  EXPECT_TRUE(take_log().empty());
  advance(1ms);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w1", "up w1"}));
  ASSERT_EQ(events_.size(), 1u);
  EXPECT_EQ(describe(events_[0]), "worker_started w1");
  EXPECT_TRUE(mentions(events_[0].reason, "restart")) << events_[0].reason;
  EXPECT_EQ(status().ready, 2u);
  EXPECT_EQ(w_->starts[2], 1) << "the other worker was left alone";
  auto s = stats();
  EXPECT_EQ(s.restarts, 2u);
  EXPECT_EQ(s.per_worker[0].restarts, 2u);
  EXPECT_EQ(s.per_worker[1].restarts, 0u);
}

TEST_F(pool_actor_test, failed_starts_open_the_breaker_and_failed_probes_double_its_timeout) {
  w_->fail_all = true;
  start(options(1));
  EXPECT_EQ(starts(), 2u);  // failed, restarted at once, failed: now 100 ms of backoff
  EXPECT_FALSE(status().breaker_open);
  auto queued = submit(*disp_);
  EXPECT_FALSE(queued->done) << "no worker is ready: it waits in the pool queue";
  take_events();
  advance(99ms);
  EXPECT_EQ(starts(), 2u);
  advance(1ms);
  EXPECT_EQ(starts(), 3u);
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_exited w1", "breaker_opened 1000ms"}));
  EXPECT_TRUE(status().breaker_open);
  ASSERT_TRUE(status().last_start_error);
  EXPECT_EQ(status().last_start_error->message, "w1: init raised");
  // The queued request, and any new one, are answered pool_unavailable at once.
  ASSERT_TRUE(queued->done);
  ASSERT_TRUE(queued->err);
  EXPECT_EQ(queued->err->code, errc::pool_unavailable);
  EXPECT_TRUE(mentions(queued->err->message, "circuit breaker")) << queued->err->message;
  auto refused = submit(*disp_);
  ASSERT_TRUE(refused->done);
  EXPECT_EQ(refused->err->code, errc::pool_unavailable);

  advance(999ms);
  EXPECT_EQ(starts(), 3u) << "no start while open";
  EXPECT_TRUE(take_events().empty());
  advance(1ms);
  EXPECT_EQ(starts(), 4u) << "one probe start";
  EXPECT_EQ(take_events(), (std::vector<std::string>{"breaker_half_open w1", "worker_exited w1",
                                                     "breaker_opened 2000ms"}));
  advance(1999ms);
  EXPECT_EQ(starts(), 4u);
  advance(1ms);
  EXPECT_EQ(starts(), 5u);
  EXPECT_EQ(take_events(), (std::vector<std::string>{"breaker_half_open w1", "worker_exited w1",
                                                     "breaker_opened 3000ms"}))
    << "4 s capped at max_reset_timeout";
  advance(3000ms);
  EXPECT_EQ(starts(), 6u);
  EXPECT_EQ(take_events(), (std::vector<std::string>{"breaker_half_open w1", "worker_exited w1",
                                                     "breaker_opened 3000ms"}));
  EXPECT_TRUE(status().breaker_open);

  w_->fail_all = false;  // the cause is fixed: the next probe comes up
  advance(2999ms);
  EXPECT_EQ(starts(), 6u);
  advance(1ms);
  EXPECT_EQ(starts(), 7u);
  EXPECT_EQ(take_events(),
            (std::vector<std::string>{"breaker_half_open w1", "worker_started w1", "breaker_closed"}));
  EXPECT_FALSE(status().breaker_open);
  EXPECT_EQ(status().ready, 1u);
  auto served = submit(*disp_);
  ASSERT_TRUE(served->done);
  EXPECT_EQ(served->worker, 1u) << "dispatching again";
  auto s = stats();
  EXPECT_FALSE(s.breaker_open);
  EXPECT_EQ(s.restarts, 6u);
}

TEST_F(pool_actor_test, a_successful_probe_closes_the_breaker_and_restarts_the_waiting_workers) {
  w_->fail_all = true;
  start(options(2));
  // w1 and w2 failed, both restarted at once and failed again: the third failure opened it.
  EXPECT_EQ(w_->starts[1], 2);
  EXPECT_EQ(w_->starts[2], 2);
  EXPECT_EQ(count_events(pool_event::breaker_opened), 1);
  EXPECT_TRUE(status().breaker_open);
  EXPECT_EQ(status().ready, 0u);
  take_log();
  take_events();
  w_->fail_all = false;
  w_->hold = true;
  advance(999ms);
  EXPECT_TRUE(take_log().empty());
  advance(1ms);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w1"})) << "one probe, the other waits";
  EXPECT_EQ(take_events(), (std::vector<std::string>{"breaker_half_open w1"}));
  up(1);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"up w1", "start w2"}));
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_started w1", "breaker_closed"}));
  EXPECT_FALSE(status().breaker_open);
  up(2);
  EXPECT_EQ(status().ready, 2u);
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_started w2"}));
}

// Regression, fixed (actors/pool/pool_actor.cpp: start_failed() arms the probe timer, on_probe() takes it):
// the probe timer is not tied to the opening that armed it. When the breaker opens, and a start
// that was already running comes up and closes it (on_up(), breaker_.started()), the timer stays
// armed; if the breaker opens again before it fires, the stale timer half-opens it early: here
// at 1000 ms (the first opening's deadline) instead of 1500 ms (reset_timeout after the second
// opening). A stale timer can cut any later open period short the same way (also one after a
// failed probe, whose doubled timeout it ignores). Expected: the probe exactly reset_timeout
// (or the doubled timeout) after the latest opening, e.g. with a generation number checked in
// on_probe() as on_restart_due() does for restarts.
TEST_F(pool_actor_test, a_stale_probe_timer_does_not_half_open_a_later_opening_early) {
  auto o = options(3);
  o.breaker = breaker_of(2, 1s, 8s);
  w_->hold = true;
  start(o);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w1", "start w2", "start w3"}));
  fail(1);  // 1 failure: restarted at once
  fail(2);  // 2 failures: open at t = 0, probe timer for t = 1000 ms
  up(3);    // w3's start was already running and comes up: closed, w2 restarted
  EXPECT_EQ(count_events(pool_event::breaker_opened), 1);
  EXPECT_EQ(count_events(pool_event::breaker_closed), 1);
  EXPECT_FALSE(status().breaker_open);
  advance(500ms);
  fail(1);  // 1 failure (w1: 100 ms backoff)
  fail(2);  // 2 failures: open again at t = 500 ms, the probe is due at t = 1500 ms
  EXPECT_EQ(count_events(pool_event::breaker_opened), 2);
  EXPECT_TRUE(status().breaker_open);
  advance(499ms);  // t = 999 ms
  EXPECT_EQ(count_events(pool_event::breaker_half_open), 0);
  advance(1ms);  // t = 1000 ms: the first opening's timer
  EXPECT_EQ(count_events(pool_event::breaker_half_open), 0)
    << "half open 500 ms after the breaker opened (reset_timeout is 1000 ms)";
  advance(499ms);  // t = 1499 ms
  EXPECT_EQ(count_events(pool_event::breaker_half_open), 0);
  advance(1ms);  // t = 1500 ms
  EXPECT_EQ(count_events(pool_event::breaker_half_open), 1);
}

TEST_F(pool_actor_test, a_refused_worker_counts_as_a_failed_start_and_is_made_again) {
  w_->refuse_make = 1;
  start(options(2));
  EXPECT_EQ(w_->made.size(), 2u);
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_exited w1", "worker_started w2"}));
  EXPECT_EQ(status().ready, 1u);
  EXPECT_FALSE(status().breaker_open) << "1 failure of 3";
  ASSERT_TRUE(status().last_start_error);
  EXPECT_EQ(status().last_start_error->code, errc::spawn_failed);
  advance(10s);
  EXPECT_EQ(status().ready, 2u) << "the pool is back to its size";
  EXPECT_EQ(w_->made.size(), 3u);
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_started w3"}));
}

TEST_F(pool_actor_test, refusals_open_the_breaker_and_its_probe_makes_a_new_worker) {
  w_->refuse_make = 1000;
  start(options(3));
  EXPECT_EQ(w_->made.size(), 3u);
  EXPECT_TRUE(w_->actors.empty());
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_exited w1", "worker_exited w2",
                                                     "worker_exited w3", "breaker_opened 1000ms"}));
  EXPECT_TRUE(status().breaker_open);
  ASSERT_TRUE(status().last_start_error);
  EXPECT_EQ(status().last_start_error->code, errc::spawn_failed);
  advance(999ms);
  EXPECT_EQ(count_events(pool_event::breaker_half_open), 0);
  EXPECT_TRUE(status().breaker_open);
  w_->refuse_make = 0;  // the cause is fixed
  advance(1ms);
  EXPECT_EQ(count_events(pool_event::breaker_half_open), 1);
  EXPECT_EQ(count_events(pool_event::breaker_closed), 1);
  EXPECT_FALSE(status().breaker_open);
  EXPECT_GE(status().ready, 1u);
}

// Regression, fixed (actors/pool/pool_actor.cpp, add_worker(): the refusal branch retries with add_atom only
// while the breaker is closed; on_probe() makes one new worker): a refusal while the breaker
// is open (and the refusal that opens it) is never retried. So when every make is refused for
// a while (python or the runner dir missing, say) and then works again, the probe's worker
// closes the breaker and nothing makes the others: here a pool of 3 stays at 1 worker for good
// (the autoscaler's below-min correction is off when min == max; nothing else tops it up).
// Expected: once the breaker closes, the pool gets back to its size (e.g. top up to
// min_workers when the breaker closes, as the add_atom handler does).
TEST_F(pool_actor_test, after_refusals_the_pool_gets_back_to_its_size_once_the_breaker_closes) {
  w_->refuse_make = 1000;
  start(options(3));
  EXPECT_TRUE(status().breaker_open);
  advance(1s);  // the probe's make is refused too: open again, for 2 s
  EXPECT_EQ(count_events(pool_event::breaker_half_open), 1);
  EXPECT_TRUE(status().breaker_open);
  w_->refuse_make = 0;  // the cause is fixed
  advance(2s);          // the next probe's worker comes up and closes the breaker
  EXPECT_EQ(count_events(pool_event::breaker_closed), 1);
  EXPECT_FALSE(status().breaker_open);
  advance(10s);
  EXPECT_EQ(status().ready, 3u) << "the breaker closed with the pool short of workers";
}

TEST_F(pool_actor_test, resize_adds_workers_and_retires_the_extra_ones_for_good) {
  start(options(3));
  take_log();
  take_events();
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{5}));
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w4", "up w4", "start w5", "up w5"}));
  EXPECT_EQ(take_events(), (std::vector<std::string>{"resized", "worker_started w4",
                                                     "worker_started w5"}));
  EXPECT_EQ(status().ready, 5u);
  EXPECT_EQ(w_->made.back(), (std::pair<std::uint32_t, std::uint32_t>{5, 5}));

  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{2}));
  // The least busy go; all are idle, so the newest first. Each is told to stop for good.
  EXPECT_EQ(take_log(), (std::vector<std::string>{"exit w5", "gone w5", "exit w4", "gone w4",
                                                  "exit w3", "gone w3"}));
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{5, 4, 3}));
  EXPECT_EQ(count_events(pool_event::worker_retired), 3);
  EXPECT_EQ(count_events(pool_event::worker_restarting), 0);
  EXPECT_EQ(status().ready, 2u);
  auto s = stats();
  EXPECT_EQ(s.workers, 2u);
  ASSERT_EQ(s.per_worker.size(), 2u);
  EXPECT_EQ(s.per_worker[0].id, "w1");
  EXPECT_EQ(s.per_worker[1].id, "w2");
  advance(5s);
  EXPECT_TRUE(take_log().empty()) << "retired workers are not restarted";

  auto zero = ask(pool_resize_atom::value, std::size_t{0});
  ASSERT_TRUE(zero);
  EXPECT_EQ(zero->code, errc::invalid_argument);
}

TEST_F(pool_actor_test, resize_removes_a_starting_worker_before_a_ready_one) {
  start(options(2));
  w_->hold = true;
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{3}));
  take_log();
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{2}));
  EXPECT_EQ(take_log(), (std::vector<std::string>{"exit w3", "gone w3"}));
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{3}));
  EXPECT_EQ(status().ready, 2u);
}

TEST_F(pool_actor_test, stop_answers_once_every_worker_actor_is_gone) {
  start(options(2));
  crash(1);  // restarted at once
  crash(1);  // now waits 100 ms: stop finds it between processes
  take_log();
  take_events();
  w_->linger = true;  // each actor takes its time to end, as a real one reaping its process
  auto h = self_->request(pool_, caf::infinite, stop_atom::value);
  sched_.run();
  EXPECT_EQ(take_log(), (std::vector<std::string>{"exit w1", "exit w2"}));
  EXPECT_FALSE(has_reply()) << "both actors are still there";
  leave(1);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"gone w1"}));
  EXPECT_FALSE(has_reply()) << "w2 is still there";
  leave(2);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"gone w2"}));
  ASSERT_TRUE(has_reply());
  bool stopped = false;
  h.receive([&](bool b) { stopped = b; }, [&](caf::error& e) { ADD_FAILURE() << sys_.render(e); });
  EXPECT_TRUE(stopped);
  EXPECT_TRUE(status().ended);
  EXPECT_EQ(status().ready, 0u);
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{1, 2}));
  EXPECT_EQ(count_events(pool_event::worker_retired), 2);
  advance(1s);
  EXPECT_TRUE(take_log().empty()) << "w1's pending restart did nothing";
  // The pool actor is gone: a request fails.
  auto after = self_->request(pool_, caf::infinite, pool_resize_atom::value, std::size_t{3});
  sched_.run();
  bool failed = false;
  if (has_reply())
    after.receive([](bool) {}, [&](caf::error&) { failed = true; });
  EXPECT_TRUE(failed);
}

TEST_F(pool_actor_test, an_exit_message_stops_the_pool_like_stop) {
  start(options(2));
  take_log();
  caf::anon_send_exit(pool_, caf::exit_reason::user_shutdown);
  sched_.run();
  EXPECT_EQ(take_log(), (std::vector<std::string>{"exit w1", "gone w1", "exit w2", "gone w2"}));
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{1, 2}));
  EXPECT_TRUE(status().ended);
  auto late = submit(*disp_);
  ASSERT_TRUE(late->done);
  ASSERT_TRUE(late->err);
  EXPECT_EQ(late->err->code, errc::interpreter_down) << "the dispatcher refuses once stopping";
}

TEST_F(pool_actor_test, a_worker_actor_that_dies_is_replaced_on_its_ring_slot) {
  auto o = options(2);
  o.dispatch = dispatch_policy::key_affinity;
  start(o);
  std::vector<std::uint32_t> before;
  for (int i = 0; i < 200; ++i)
    before.push_back(submit(*disp_, key_of(i))->worker);
  ASSERT_TRUE(std::count(before.begin(), before.end(), 2u) > 0);
  take_log();
  take_events();
  caf::anon_send_exit(w_->actors.at(2), caf::exit_reason::kill);  // no child_down: just gone
  sched_.run();
  EXPECT_EQ(take_log(), (std::vector<std::string>{"gone w2", "start w3", "up w3"}));
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_retired w2", "worker_started w3"}));
  EXPECT_EQ(w_->made.back(), (std::pair<std::uint32_t, std::uint32_t>{3, 2}));
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{2}));
  EXPECT_EQ(status().ready, 2u);
  for (int i = 0; i < 200; ++i) {
    auto now = submit(*disp_, key_of(i))->worker;
    EXPECT_EQ(now, before[i] == 2 ? 3u : before[i]) << key_of(i) << ": w2's keys go to w3, only";
  }
}

TEST_F(pool_actor_test, interrupt_cancels_the_queue_and_interrupts_every_worker) {
  w_->hold = true;
  start(options(2));
  auto q1 = submit(*disp_);
  auto q2 = submit(*disp_);
  auto q3 = submit(*disp_);
  take_log();
  std::size_t n = 0;
  auto h = self_->request(pool_, caf::infinite, interrupt_atom::value);
  sched_.run();
  ASSERT_TRUE(has_reply());
  h.receive([&](std::size_t k) { n = k; }, [&](caf::error& e) { ADD_FAILURE() << sys_.render(e); });
  EXPECT_EQ(n, 5u) << "3 cancelled in the pool queue, and 1 from each worker";
  EXPECT_EQ(take_log(), (std::vector<std::string>{"interrupt w1", "interrupt w2"}));
  for (auto& q : {q1, q2, q3}) {
    ASSERT_TRUE(q->done);
    ASSERT_TRUE(q->err);
    EXPECT_EQ(q->err->code, errc::cancelled);
  }
}

TEST_F(pool_actor_test, a_request_through_the_actor_interface_waits_for_a_worker) {
  w_->hold = true;
  start(options(1));
  eval_request req;
  req.code = "1 + 1";
  auto h = self_->request(pool_, caf::infinite, eval_atom::value, req);
  sched_.run();
  EXPECT_FALSE(has_reply()) << "no worker is ready: it waits in the pool queue";
  EXPECT_EQ(stats().queued, 1u);
  up(1);
  ASSERT_TRUE(has_reply());
  std::optional<error> err;
  h.receive([](const value&) { ADD_FAILURE() << "a test worker has no process"; },
            [&](caf::error& e) { err = to_error(e); });
  ASSERT_TRUE(err);
  EXPECT_EQ(err->code, errc::interpreter_down);
  EXPECT_TRUE(mentions(err->message, "'w1' has no process")) << err->message;
  EXPECT_EQ(stats().served, 1u);
}

TEST_F(pool_actor_test, recycling_replaces_a_worker_without_dropping_capacity) {
  auto o = options(1);
  o.recycle.max_requests = 2;
  w_->hold = true;
  start(o);
  up(1);
  take_log();
  take_events();
  auto a1 = submit(*disp_);
  auto a2 = submit(*disp_);
  EXPECT_EQ(a1->worker, 1u);
  EXPECT_EQ(a2->worker, 1u);
  sched_.run();  // the dispatcher's recycling notice reaches the pool actor
  EXPECT_EQ(take_events(), (std::vector<std::string>{"worker_recycling w1"}));
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w2"})) << "w1 stays until w2 is ready";
  EXPECT_EQ(w_->made.back(), (std::pair<std::uint32_t, std::uint32_t>{2, 1}))
    << "the replacement inherits w1's place on the ring";
  auto a3 = submit(*disp_);
  EXPECT_FALSE(a3->done) << "w1 takes no more, w2 is not ready: it waits";
  up(2);
  EXPECT_EQ(a3->worker, 2u);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"up w2", "exit w1", "gone w1"}));
  EXPECT_EQ(gone_, (std::vector<std::uint32_t>{1}));
  auto s = stats();
  EXPECT_EQ(s.recycled, 1u);
  EXPECT_EQ(s.workers, 1u);
  EXPECT_EQ(s.ready, 1u);
}

TEST_F(pool_actor_test, autoscaling_adds_a_worker_after_the_up_window_and_removes_it_when_idle) {
  auto o = options(1);
  o.autoscale.min_workers = 1;
  o.autoscale.max_workers = 2;
  o.autoscale.up_window = 500ms;
  o.autoscale.idle_timeout = 1s;
  o.autoscale.check_interval = 100ms;
  start(o);  // t = 0; checks at 100 ms, 200 ms, ...
  EXPECT_EQ(status().ready, 1u);
  w_->hold = true;
  crash(1);  // its restart hangs: nothing takes requests
  auto q = submit(*disp_);
  EXPECT_FALSE(q->done);
  take_log();
  take_events();
  advance(599ms);  // queued since the check at 100 ms
  EXPECT_EQ(count_events(pool_event::scaled_up), 0);
  advance(1ms);  // t = 600 ms: a whole up_window
  ASSERT_EQ(count_events(pool_event::scaled_up), 1);
  EXPECT_TRUE(mentions(last_reason(pool_event::scaled_up), "queued"))
    << last_reason(pool_event::scaled_up);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start w2"}));
  advance(2s);  // t = 2600 ms: still queued, but at max_workers
  EXPECT_EQ(count_events(pool_event::scaled_up), 1);
  EXPECT_EQ(w_->made.size(), 2u);
  up(2);
  EXPECT_EQ(q->worker, 2u);
  up(1);
  take_log();
  events_.clear();
  advance(1099ms);  // idle since the check at 2700 ms
  EXPECT_EQ(count_events(pool_event::scaled_down), 0);
  advance(1ms);  // t = 3700 ms
  ASSERT_EQ(count_events(pool_event::scaled_down), 1);
  EXPECT_TRUE(mentions(last_reason(pool_event::scaled_down), "idle"))
    << last_reason(pool_event::scaled_down);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"exit w2", "gone w2"}));
  advance(5s);
  EXPECT_EQ(count_events(pool_event::scaled_down), 1) << "never below min_workers";
  EXPECT_EQ(status().ready, 1u);
}

// Regression, fixed (actors/pool/pool_actor.cpp: the pool_resize_atom handler, schedule_tick(), and the
// schedule_tick() call that ends on_tick()): the check timer re-arms itself only while the
// autoscaler is enabled. resize(n) sets the bounds to [n, max(n, max_workers)]; a
// resize to max_workers makes them [max, max] (disabled), the next check does not re-arm, and a
// later resize(n < max), which re-enables autoscaling within [n, max] as pool.hpp documents,
// never restarts the timer: the pool never scales again (the same for a pool whose autoscale
// bounds were equal from the start and are widened by resize). Expected: autoscaling resumes
// within the new bounds (e.g. the resize handler calls schedule_tick() when enabled() turned
// true, or the timer always runs).
TEST_F(pool_actor_test, autoscaling_resumes_after_a_resize_to_max_and_back) {
  auto o = options(1);
  o.autoscale.min_workers = 1;
  o.autoscale.max_workers = 3;
  o.autoscale.up_window = 500ms;
  o.autoscale.idle_timeout = 60s;
  o.autoscale.check_interval = 100ms;
  start(o);
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{3}));  // bounds [3, 3]
  advance(100ms);                                              // a check
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{1}));  // bounds [1, 3]
  EXPECT_EQ(status().ready, 1u);
  w_->hold = true;
  crash(1);  // nothing takes requests now
  auto q = submit(*disp_);
  EXPECT_FALSE(q->done);
  events_.clear();
  advance(2s);
  EXPECT_GE(count_events(pool_event::scaled_up), 1)
    << "queued for 2 s with 1 worker of at most 3, and no worker was added";
}
