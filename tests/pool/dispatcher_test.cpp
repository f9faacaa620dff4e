// The pool layer (actors/pool) without processes: the dispatcher with table-less test workers
// (it answers them interpreter_down on the spot, on the calling thread), for routing, queueing
// and the breaker/stop refusals.

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "io/io_loop.hpp"
#include "pool/dispatcher.hpp"
#include "pool/pool_test_support.hpp"
#include "pool/worker.hpp"
#include "pyvisor/pool.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

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
