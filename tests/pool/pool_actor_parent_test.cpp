// The pool layer (actors/pool) without processes: a pool as the child of a supervisor (the
// child protocol of core/child_protocol.hpp) under CAF's deterministic test_coordinator with
// simulated time; the fixture (pool_actor_test, stand-in workers) is in pool_test_support.hpp.
// The parent here is a stand-in that records what the pool reports.
//
// What a supervisor relies on: the pool starts its workers only at child_start; it reports
// child_up once min_ready workers are ready; child_stop stops every worker and is answered by
// one child_down(shutdown) once they are gone; a breaker that opens before child_up ends the
// start with child_down(start_failed) carrying the start error; the pool's queue (and handle)
// survive between incarnations, so a request made while it restarts is served afterwards.

#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "pool/pool_test_support.hpp"

using namespace pyvisor;
using namespace pyvisor::test;
using namespace std::chrono_literals;

namespace {

/// What the stand-in parent received: "up", "down shutdown", "down start_failed: <message>".
struct parent_log {
  std::vector<std::string> lines;
};

caf::behavior recording_parent(caf::event_based_actor*, std::shared_ptr<parent_log> log) {
  return {
    [log](child_up_atom, const caf::actor_addr&, int) { log->lines.push_back("up"); },
    [log](child_down_atom, const caf::actor_addr&, const exit_report& r) {
      std::string line = "down " + std::string{to_string(r.kind)};
      if (r.kind == exit_kind::start_failed)
        line += ": " + r.reason.message;
      log->lines.push_back(line);
    },
  };
}

class pool_parent_test : public pool_actor_test {
protected:
  std::shared_ptr<parent_log> plog_ = std::make_shared<parent_log>();
  caf::actor parent_;

  void start_child(pool_options o) {
    parent_ = sys_.spawn(recording_parent, plog_);
    start(std::move(o), parent_);
  }

  void send_to_pool(caf::message m) {
    self_->send(pool_, std::move(m));
    sched_.run();
  }

  std::vector<std::string> take_parent() {
    auto l = std::move(plog_->lines);
    plog_->lines.clear();
    return l;
  }

  void TearDown() override {
    pool_actor_test::TearDown();
    if (parent_)
      anon_send_exit(parent_, caf::exit_reason::kill);
    sched_.run();
  }
};

} // namespace

TEST_F(pool_parent_test, starts_at_child_start_and_reports_up_once_min_ready_workers_are_ready) {
  w_->hold = true;
  auto o = options(3);
  o.min_ready = 2;
  start_child(o);
  EXPECT_EQ(starts(), 0u) << "nothing starts before child_start";
  EXPECT_TRUE(take_parent().empty());

  send_to_pool(caf::make_message(child_start_atom::value));
  EXPECT_EQ(starts(), 3u);
  up(1);
  EXPECT_TRUE(take_parent().empty()) << "one ready worker is not min_ready";
  up(2);
  EXPECT_EQ(take_parent(), (std::vector<std::string>{"up"}));
  up(3);
  EXPECT_TRUE(take_parent().empty()) << "child_up once per incarnation";
}

TEST_F(pool_parent_test, child_stop_stops_every_worker_then_reports_one_child_down) {
  start_child(options(2));
  send_to_pool(caf::make_message(child_start_atom::value));
  EXPECT_EQ(take_parent(), (std::vector<std::string>{"up"}));
  take_log();

  send_to_pool(caf::make_message(child_stop_atom::value, shutdown_policy{}));
  auto log = take_log();
  EXPECT_NE(std::find(log.begin(), log.end(), "exit w1"), log.end());
  EXPECT_NE(std::find(log.begin(), log.end(), "exit w2"), log.end());
  EXPECT_EQ(take_parent(), (std::vector<std::string>{"down shutdown"}));
  EXPECT_EQ(status().ready, 0u);
  EXPECT_FALSE(status().ended) << "the pool actor outlives the incarnation";
}

TEST_F(pool_parent_test, a_request_made_between_incarnations_waits_and_is_served_after_the_restart) {
  start_child(options(1));
  send_to_pool(caf::make_message(child_start_atom::value));
  send_to_pool(caf::make_message(child_stop_atom::value, shutdown_policy{}));
  EXPECT_EQ(take_parent(), (std::vector<std::string>{"up", "down shutdown"}));

  auto waiting = submit(*disp_);
  EXPECT_FALSE(waiting->done) << "no worker: it waits in the pool queue";
  advance(10s);
  EXPECT_EQ(starts(), 1u) << "no worker starts while the pool is between incarnations";

  send_to_pool(caf::make_message(child_start_atom::value));
  EXPECT_EQ(take_parent(), (std::vector<std::string>{"up"}));
  EXPECT_EQ(starts(), 2u);
  EXPECT_EQ(status().ready, 1u);
  EXPECT_TRUE(waiting->done) << "handed to the new worker";
  // The stand-in has no process: being handed to w2 is what shows (not a refusal by the pool).
  ASSERT_TRUE(waiting->err.has_value());
  EXPECT_TRUE(mentions(waiting->err->message, "worker 'w2' has no process")) << waiting->err->message;
  EXPECT_EQ(waiting->worker, 2u);
}

TEST_F(pool_parent_test, a_breaker_that_opens_before_up_ends_the_start_with_the_start_error) {
  w_->fail_all = true;
  start_child(options(1));
  send_to_pool(caf::make_message(child_start_atom::value));
  advance(100ms);  // failed, restarted at once, failed, 100 ms backoff, failed: opens
  EXPECT_EQ(take_parent(), (std::vector<std::string>{"down start_failed: w1: init raised"}));
  auto before = starts();
  advance(10s);
  EXPECT_EQ(starts(), before) << "no probe after the incarnation ended";

  // The supervisor restarts it; now it comes up, with a fresh breaker.
  w_->fail_all = false;
  send_to_pool(caf::make_message(child_start_atom::value));
  EXPECT_EQ(take_parent(), (std::vector<std::string>{"up"}));
  EXPECT_FALSE(status().breaker_open);
}

TEST_F(pool_parent_test, resize_while_between_incarnations_applies_at_the_next_start) {
  start_child(options(1));
  send_to_pool(caf::make_message(child_start_atom::value));
  send_to_pool(caf::make_message(child_stop_atom::value, shutdown_policy{}));
  take_parent();
  EXPECT_FALSE(ask(pool_resize_atom::value, std::size_t{3}).has_value());
  EXPECT_EQ(starts(), 1u);
  send_to_pool(caf::make_message(child_start_atom::value));
  EXPECT_EQ(starts(), 4u);
  EXPECT_EQ(status().ready, 3u);
}

TEST_F(pool_parent_test, an_exit_from_the_parent_ends_the_pool_for_good) {
  start_child(options(2));
  send_to_pool(caf::make_message(child_start_atom::value));
  take_parent();
  anon_send_exit(pool_, caf::exit_reason::user_shutdown);
  sched_.run();
  EXPECT_TRUE(status().ended);
  auto refused = submit(*disp_);
  ASSERT_TRUE(refused->done);
  ASSERT_TRUE(refused->err);
  EXPECT_EQ(refused->err->code, errc::interpreter_down);
}
