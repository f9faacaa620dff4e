#include "io/io_loop.hpp"

#include <cstdio>
#include <cstdlib>
#include <future>

namespace pyvisor::io {

io_loop::io_loop() {
  if (uv_loop_init(&loop_) != 0 || uv_async_init(&loop_, &wake_, &on_wake) != 0) {
    std::fputs("pyvisor: cannot initialize the libuv loop\n", stderr);
    std::abort();
  }
  wake_.data = this;
  std::promise<void> started;
  auto fut = started.get_future();
  thread_ = std::thread([this, &started] {
    thread_id_ = std::this_thread::get_id();
    started.set_value();
    uv_run(&loop_, UV_RUN_DEFAULT);
  });
  fut.wait();
}

io_loop::~io_loop() {
  stop();
}

void io_loop::post(std::function<void()> f) {
  {
    std::lock_guard<std::mutex> g{mu_};
    if (stopping_)
      return;
    queue_.push_back(std::move(f));
    senders_.fetch_add(1, std::memory_order_relaxed);
  }
  // Outside the lock (the loop thread takes it to drain); stop() waits for this send before
  // it closes the loop: libuv aborts a send to a closed loop (its write to the closed eventfd).
  uv_async_send(&wake_);
  senders_.fetch_sub(1, std::memory_order_release);
}

void io_loop::on_wake(uv_async_t* h) {
  static_cast<io_loop*>(h->data)->drain();
}

void io_loop::drain() {
  std::vector<std::function<void()>> jobs;
  for (;;) {
    {
      std::lock_guard<std::mutex> g{mu_};
      jobs.swap(queue_);
    }
    if (jobs.empty())
      break;
    for (auto& f : jobs)
      f();
    jobs.clear();
  }
  bool stopping;
  {
    std::lock_guard<std::mutex> g{mu_};
    stopping = stopping_;
  }
  if (stopping) {
    // Close every handle still open (watchers of interpreters that were not stopped cleanly
    // are closed here; their fds belong to their owners). uv_run then returns.
    uv_walk(
      &loop_,
      [](uv_handle_t* h, void*) {
        if (uv_is_closing(h))
          return;
        if (h->type == UV_ASYNC) {  // the loop's own wake-up handle
          uv_close(h, nullptr);
          return;
        }
        uv_close(h, [](uv_handle_t* c) {
          if (c->data != nullptr)
            static_cast<loop_handle*>(c->data)->handle_closed();
        });
      },
      nullptr);
  }
}

void io_loop::stop() {
  {
    std::lock_guard<std::mutex> g{mu_};
    if (stopped_)
      return;
    stopped_ = true;
  }
  // Jobs posted before stop() still run; then the walk closes all handles.
  post([] {});
  {
    std::lock_guard<std::mutex> g{mu_};
    stopping_ = true;
  }
  uv_async_send(&wake_);
  if (thread_.joinable())
    thread_.join();
  // A post that queued its job before stopping_ was set may still be in uv_async_send. No new
  // one can start now.
  while (senders_.load(std::memory_order_acquire) != 0)
    std::this_thread::yield();
  uv_loop_close(&loop_);
}

std::shared_ptr<fd_watcher> fd_watcher::make(io_loop& loop, int fd, callback cb) {
  auto w = std::shared_ptr<fd_watcher>(new fd_watcher(fd, std::move(cb)));
  uv_poll_init(loop.loop(), &w->poll_, fd);
  w->poll_.data = static_cast<loop_handle*>(w.get());
  w->self_ = w;  // released by the close callback
  return w;
}

void fd_watcher::start(int events) {
  if (closed_ || events == events_)
    return;
  events_ = events;
  uv_poll_start(&poll_, events, &on_poll);
}

void fd_watcher::stop() {
  if (closed_ || events_ == 0)
    return;
  events_ = 0;
  uv_poll_stop(&poll_);
}

void fd_watcher::close() {
  if (closed_)
    return;
  closed_ = true;
  events_ = 0;
  cb_ = nullptr;
  if (uv_is_closing(reinterpret_cast<uv_handle_t*>(&poll_))) {
    // The loop's final walk closed it already; its close callback (none) will not run.
    self_.reset();
    return;
  }
  uv_close(reinterpret_cast<uv_handle_t*>(&poll_), [](uv_handle_t* h) {
    static_cast<loop_handle*>(h->data)->handle_closed();
  });
}

void fd_watcher::handle_closed() {
  closed_ = true;
  events_ = 0;
  cb_ = nullptr;
  self_.reset();  // may destroy *this
}

void fd_watcher::on_poll(uv_poll_t* h, int status, int events) {
  auto self = static_cast<fd_watcher*>(static_cast<loop_handle*>(h->data));
  if (self->closed_ || !self->cb_)
    return;
  // Keep alive across the callback: it may close the watcher.
  auto keep = self->shared_from_this();
  auto cb = self->cb_;
  cb(status, events);
}

} // namespace pyvisor::io
