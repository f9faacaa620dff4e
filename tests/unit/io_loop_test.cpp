// io::io_loop: posts from other threads racing with stop().
#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "io/io_loop.hpp"

namespace {

// A post that had queued its job when stop() began used to finish its uv_async_send after the
// loop was closed; libuv aborts the process on that write (a CI run lost a test binary to it).
// Each round stops a loop while three threads post to it without pause.
TEST(io_loop, stop_waits_for_posts_in_flight) {
  for (int round = 0; round < 300; ++round) {
    auto loop = std::make_unique<pyvisor::io::io_loop>();
    std::atomic<bool> go{true};
    std::atomic<int> ran{0};
    std::vector<std::thread> posters;
    for (int i = 0; i < 3; ++i)
      posters.emplace_back([&] {
        while (go.load(std::memory_order_relaxed))
          loop->post([&ran] { ran.fetch_add(1, std::memory_order_relaxed); });
      });
    while (ran.load() == 0)
      std::this_thread::yield();  // the loop is draining posts
    loop->stop();
    go = false;
    for (auto& t : posters)
      t.join();
    loop.reset();
  }
}

TEST(io_loop, a_job_posted_after_stop_is_dropped) {
  pyvisor::io::io_loop loop;
  std::atomic<int> ran{0};
  loop.post([&ran] { ran = 1; });
  loop.stop();
  EXPECT_EQ(ran.load(), 1);  // posted before stop(): it runs
  loop.post([&ran] { ran = 2; });
  EXPECT_EQ(ran.load(), 1);
}

} // namespace
