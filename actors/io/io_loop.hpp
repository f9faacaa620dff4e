#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include <uv.h>

#include "io/thread_wake.hpp"

namespace pyvisor::io {

/// The one libuv loop thread of a runtime. Everything that touches a uv handle runs on it.
/// Other threads reach it only through `post` (a mutex-guarded queue plus uv_async_send, which
/// coalesces: one wake-up drains the whole queue).
class io_loop {
public:
  io_loop();
  ~io_loop();  ///< Runs the remaining posted jobs, closes every handle, joins the thread.
  io_loop(const io_loop&) = delete;
  io_loop& operator=(const io_loop&) = delete;

  /// Runs `f` on the loop thread. Thread-safe. After stop() the job is dropped.
  void post(std::function<void()> f);

  /// Whether the caller runs on the loop thread.
  bool on_loop_thread() const noexcept { return std::this_thread::get_id() == thread_id_; }

  /// The loop (only for use on the loop thread).
  uv_loop_t* loop() noexcept { return &loop_; }

  /// Stops the loop and joins the thread. Idempotent.
  void stop();

  /// The wakes of threads that read their own replies (connection::read_reply_here).
  thread_wakes& wakes() noexcept { return wakes_; }

private:
  static void on_wake(uv_async_t* h);
  void drain();

  uv_loop_t loop_{};
  uv_async_t wake_{};
  std::mutex mu_;
  std::vector<std::function<void()>> queue_;
  bool stopping_ = false;
  bool stopped_ = false;
  std::atomic<int> senders_{0};  // posts between queueing their job and their uv_async_send's end
  std::thread thread_;
  std::thread::id thread_id_;
  thread_wakes wakes_;
};

/// What every uv handle pyvisor creates (besides the loop's own wake-up) has in its `data`: the
/// loop's final walk (stop()) closes handles their owners never closed, and tells them here, so
/// an owner that keeps itself alive until its close callback (fd_watcher, deadline_timer) can
/// let go instead of leaking.
class loop_handle {
public:
  virtual void handle_closed() = 0;

protected:
  ~loop_handle() = default;
};

/// Watches one fd for readability or writability with uv_poll (the fd stays ours: we read and
/// write it with plain syscalls, so frames can be read straight into their final buffer).
/// Create, use and close only on the loop thread. `close()` releases the handle
/// asynchronously; the watcher object must stay allocated until then, so it is always owned by
/// a shared_ptr that the close callback keeps alive.
class fd_watcher : public std::enable_shared_from_this<fd_watcher>, public loop_handle {
public:
  using callback = std::function<void(int status, int events)>;

  static std::shared_ptr<fd_watcher> make(io_loop& loop, int fd, callback cb);

  /// Starts (or changes) watching for `events` (UV_READABLE | UV_WRITABLE).
  void start(int events);
  /// Stops watching; the watcher can be started again.
  void stop();
  /// Stops for good and releases the uv handle. Idempotent. Does not close the fd.
  void close();

  int fd() const noexcept { return fd_; }
  bool active() const noexcept { return events_ != 0; }

private:
  fd_watcher(int fd, callback cb) : fd_(fd), cb_(std::move(cb)) {}
  void handle_closed() override;
  static void on_poll(uv_poll_t* h, int status, int events);

  uv_poll_t poll_{};
  int fd_;
  int events_ = 0;
  bool closed_ = false;
  callback cb_;
  std::shared_ptr<fd_watcher> self_;  // keeps *this alive until the close callback ran
};

} // namespace pyvisor::io
