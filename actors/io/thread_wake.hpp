#pragma once

#include <memory>

namespace pyvisor::io {

/// An eventfd of one thread that reads its own reply (connection::read_reply_here): while it
/// waits in poll(2) on the reply pipe, whoever else must reach it (a completion from another
/// thread, the I/O thread wanting the pipe back) signals it here.
class thread_wake {
public:
  explicit thread_wake(int fd) noexcept : fd_(fd) {}
  ~thread_wake();
  thread_wake(const thread_wake&) = delete;
  thread_wake& operator=(const thread_wake&) = delete;

  int fd() const noexcept { return fd_; }
  /// Makes the fd readable. Any thread.
  void signal() noexcept;
  /// Makes it unreadable again. The owning thread, after its poll saw it readable.
  void drain() noexcept;

private:
  int fd_;
};

/// The wakes of the threads that blocked on one runtime's interpreters (one per io_loop): a
/// thread's wake is made on its first blocking call, dropped when the thread ends, and every
/// one is closed with the runtime (a completion still running holds its own reference), so
/// no fd outlives the runtime and thread churn does not pile them up.
class thread_wakes {
public:
  thread_wakes();
  ~thread_wakes();
  thread_wakes(const thread_wakes&) = delete;
  thread_wakes& operator=(const thread_wakes&) = delete;

  /// The calling thread's wake; null when no eventfd can be made (the caller then waits for
  /// the I/O thread, as without one).
  std::shared_ptr<thread_wake> of_this_thread();

  struct registry;

private:
  std::shared_ptr<registry> reg_;
};

} // namespace pyvisor::io
