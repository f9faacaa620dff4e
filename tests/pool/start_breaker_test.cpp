// The pool layer (actors/pool) without processes: the start circuit breaker, a pure policy, as a
// plain object driven with chosen inputs: when failed starts open it, how probes half-open it and
// double its timeout, and how a success closes it.

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "pool/pool_test_support.hpp"
#include "pool/start_breaker.hpp"
#include "pyvisor/pool.hpp"

using namespace pyvisor;
using namespace pyvisor::test;
using namespace std::chrono_literals;

namespace {

using pooling::start_breaker;
using bstate = start_breaker::state;

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
