#pragma once

#include <atomic>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <optional>
#include <thread>

#include "interpreter/request_table.hpp"
#include "io/thread_wake.hpp"
#include "protocol/message.hpp"

namespace pyvisor::detail {

/// One blocked caller of an interpreter or a pool. When its request went out alone it reads
/// its reply itself (the worker's pipe is lent to it: io::connection::read_reply_here);
/// otherwise the I/O thread completes it straight from the request table. Held by a
/// shared_ptr that the completion keeps: set() may still run after the caller has left.
class reply_waiter {
public:
  /// `wake`: the calling thread's (request_table::wake_of_this_thread); null: never reads.
  explicit reply_waiter(std::shared_ptr<io::thread_wake> wake) : wake_(std::move(wake)) {}

  /// The completion: exactly once, from any thread.
  void set(protocol::reply r);

  /// Blocks until set() ran, reading the reply on this thread when `sent` went out alone on
  /// `table`; returns it.
  protocol::reply wait(interp::request_table* table, const interp::request_table::submitted& sent);

private:
  // A condition variable, not std::atomic::wait: libstdc++'s wait spins and yields first,
  // which with 64 callers on one CPU took a pool from 114k to 77k calls/s.
  std::mutex mu_;
  std::condition_variable cv_;
  std::atomic<bool> done_{false};
  std::atomic<bool> polling_{false};  // the caller may be in poll(2): set() wakes it there
  std::optional<protocol::reply> result_;
  std::thread::id caller_ = std::this_thread::get_id();
  std::shared_ptr<io::thread_wake> wake_;
};

} // namespace pyvisor::detail
