// io::connection: the output queue (any thread) and its writes to the child's fd 3.
#include "io/connection.hpp"
#include "io/connection_detail.hpp"

#include <algorithm>
#include <cerrno>
#include <sys/uio.h>
#include <unistd.h>

namespace pyvisor::io {

using namespace detail;

// ---- writing (any thread) -------------------------------------------------------------------

connection::write_result connection::write(std::string frame) {
  std::lock_guard<std::mutex> g{mu_};
  if (write_failed_ || reaped_ || close_after_flush_)
    return write_result::closed;
  write_locked(std::move(frame));
  return write_result::ok;
}

bool connection::busy() const {
  // Written under mu_ by the writer; the admission check reads it under the table's lock, and
  // a drain that races with it is followed by `drained`, which pumps the queue again.
  return is_busy_.load(std::memory_order_relaxed);
}

void connection::write_locked(std::string frame) {
  if (batching == this && to_child_ >= 0) {
    out_bytes_ += frame.size();
    out_.push_back({std::move(frame), 0});
    batched_ = true;
  } else if (out_.empty() && to_child_ >= 0) {
    auto n = ::write(to_child_, frame.data(), frame.size());
    if (n == static_cast<ssize_t>(frame.size())) {
      bytes_out_.fetch_add(frame.size(), std::memory_order_relaxed);
      return;
    }
    if (n < 0) {
      if (errno != EAGAIN && errno != EINTR) {
        write_failed_locked(errno);
        return;
      }
      n = 0;
    }
    bytes_out_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    out_bytes_ += frame.size() - static_cast<std::size_t>(n);
    out_.push_back({std::move(frame), static_cast<std::size_t>(n)});
    arm_writer_locked();
  } else {
    out_bytes_ += frame.size();
    out_.push_back({std::move(frame), 0});
    if (to_child_ >= 0)
      arm_writer_locked();
  }
  if (!is_busy_ && out_bytes_ > marks_.high) {
    is_busy_ = true;
    ++busy_transitions_;
  }
}

void connection::arm_writer_locked() {
  if (writer_armed_)
    return;
  writer_armed_ = true;
  loop_.post([self = shared_from_this()] {
    if (self->w_write_)
      self->w_write_->start(UV_WRITABLE);
  });
}

bool connection::flush_locked() {
  while (!out_.empty() && to_child_ >= 0) {
    iovec iov[64];
    int cnt = 0;
    for (auto i = out_.begin(); i != out_.end() && cnt < 64; ++i, ++cnt) {
      iov[cnt].iov_base = i->frame.data() + i->offset;
      iov[cnt].iov_len = i->frame.size() - i->offset;
    }
    auto n = ::writev(to_child_, iov, cnt);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      if (errno != EAGAIN)
        write_failed_locked(errno);
      break;
    }
    bytes_out_.fetch_add(static_cast<std::uint64_t>(n), std::memory_order_relaxed);
    auto left = static_cast<std::size_t>(n);
    out_bytes_ -= left;
    while (left > 0) {
      auto& f = out_.front();
      auto rest = f.frame.size() - f.offset;
      if (left >= rest) {
        left -= rest;
        out_.pop_front();
      } else {
        f.offset += left;
        left = 0;
      }
    }
  }
  bool drained = false;
  if (is_busy_ && out_bytes_ <= marks_.low) {
    is_busy_ = false;
    drained = true;
  }
  if (out_.empty() && close_after_flush_ && to_child_ >= 0) {
    // EOF tells the runner to finish even if it missed the shutdown frame. The fd is closed on
    // the I/O thread after its watcher: closing it under a live uv_poll would let that poll's
    // later close remove a *reused* fd number (another interpreter's pidfd) from epoll.
    to_child_ = -1;
    loop_.post([self = shared_from_this()] { self->close_request_pipe(); });
  }
  return drained;
}

void connection::close_after_flush() {
  std::lock_guard<std::mutex> g{mu_};
  if (close_after_flush_)
    return;
  close_after_flush_ = true;
  if (out_.empty())
    flush_locked();
}

void connection::close_request_pipe() {
  if (proc_.to_child < 0)
    return;
  if (w_write_) {
    w_write_->close();
    w_write_.reset();
  }
  ::close(proc_.to_child);
  proc_.to_child = -1;
}

void connection::on_writable() {
  bool drained;
  {
    std::lock_guard<std::mutex> g{mu_};
    drained = flush_locked();
    if (out_.empty()) {
      writer_armed_ = false;
      if (w_write_)
        w_write_->stop();
    }
  }
  if (drained && ev_.drained)
    ev_.drained();
}

void connection::write_failed_locked(int err) {
  // The process may be alive (Python closed fd 3) or gone (its exit is not handled yet).
  // Nothing more can be written either way; the I/O thread tells the owner which it is.
  out_.clear();
  out_bytes_ = 0;
  to_child_ = -1;  // the fd stays open (closed with the others at exit)
  if (write_failed_)
    return;
  write_failed_ = true;
  loop_.post([self = shared_from_this(), err] {
    if (self->reaped())
      return;  // the exit was reported already
    bool ending = self->exiting();
    if (self->ev_.write_failed)
      self->ev_.write_failed(err, ending);
  });
}

} // namespace pyvisor::io
