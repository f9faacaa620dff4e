// io::connection: lending the reply pipe to a thread that blocks until its one reply comes
// (read_reply_here), and taking it back on the I/O thread.
//
// Who reads from_child is one atomic (reader_): free, lent (a caller thread), loop (the I/O
// thread: inside one of its callbacks, or handed back by a lender until take_back ran), closed.
// While lent, the I/O thread's epoll set has from_child disarmed, so the reply wakes only the
// lender. When the I/O thread needs the pipe while it is lent (the exit, a hang-up, a stop), it
// sets reader_wanted_ and signals the lender, which hands the pipe back on its way out: either
// directly (reader_ = loop, take_back posted) or, when it saw the wish only after freeing the
// pipe, by posting take_back. Both sides write their flag, then read the other's (seq_cst): at
// least one sees the other, and the exchange on reader_wanted_ decides which one acts.
#include "io/connection.hpp"
#include "io/connection_detail.hpp"

#include <cerrno>
#include <poll.h>
#include <thread>
#include <sys/epoll.h>
#include <unistd.h>

#include "io/thread_wake.hpp"

namespace pyvisor::io {

bool connection::arm_reader(bool on) {
  epoll_event e{};
  e.events = on ? static_cast<std::uint32_t>(EPOLLIN) : 0u;
  return ::epoll_ctl(watch_fd_, EPOLL_CTL_MOD, proc_.from_child, &e) == 0;
}

void connection::kick_lender() {
  std::lock_guard<std::mutex> g{lend_mu_};
  if (lender_ != nullptr)
    lender_->signal();
}

// ---- the lender (any thread but the I/O thread) ----------------------------------------------

bool connection::read_reply_here(std::uint64_t id, thread_wake& wake,
                                 const std::function<bool()>& answered) {
  if (paused_.load() || stopped_reading_.load() || loop_.on_loop_thread())
    return false;
  // The I/O thread may still be finishing the read that completed this caller's previous
  // request (it releases the pipe on its way out): wait for that a little, yielding the CPU
  // to it, or every later request of a serial caller would miss the pipe the same way.
  int expected = reader_free;
  for (int tries = 0; !reader_.compare_exchange_strong(expected, reader_lent); ++tries) {
    if (expected != reader_loop || tries == 64)
      return false;
    expected = reader_free;
    std::this_thread::yield();
  }
  // Again now that the pipe is ours: the I/O thread pauses or stops only while it holds it,
  // so a pause that came between the check above and the claim is seen here.
  if (watch_fd_ < 0 || !ev_.frame || paused_.load() || stopped_reading_.load()) {
    reader_.store(reader_free);
    if (reader_wanted_.exchange(false))
      loop_.post([weak = weak_from_this()] {
        if (auto self = weak.lock(); self && self->claim_reader()) {
          self->take_back();
          self->release_reader();
        }
      });
    return false;
  }
  {
    std::lock_guard<std::mutex> g{lend_mu_};
    lender_ = &wake;
  }
  bool hand_back = !arm_reader(false);
  while (!hand_back) {
    // Frames read already (by this loan, or left by the I/O thread) first.
    for (;;) {
      auto r = frames_.next();
      if (r.st == protocol::frame_reader::status::need_more)
        break;
      if (r.st != protocol::frame_reader::status::frame) {
        hand_back = true;  // the I/O thread finds the same error and reports it
        break;
      }
      if (ev_.frame(r.body, r.owner, id) == frame_verdict::taken)
        continue;
      // Not this thread's reply: the I/O thread handles it first, then what follows.
      if (r.owner) {
        deferred_ = r.body;
        deferred_owner_ = std::move(r.owner);
      } else {
        deferred_copy_.assign(r.body);
        deferred_ = deferred_copy_;
      }
      has_deferred_ = true;
      hand_back = true;
      break;
    }
    if (hand_back || answered())
      break;
    if (reader_wanted_.load() || stopped_reading_.load()) {
      hand_back = true;
      break;
    }
    pollfd fds[2] = {{proc_.from_child, POLLIN, 0}, {wake.fd(), POLLIN, 0}};
    // The wake covers every completion from elsewhere; the bound only re-checks answered().
    int n = ::poll(fds, 2, 1000);
    if (n < 0) {
      if (errno == EINTR)
        continue;
      hand_back = true;
      break;
    }
    if (fds[1].revents != 0)
      wake.drain();
    if (fds[0].revents == 0)
      continue;
    auto [p, room] = frames_.write_area();
    if (room == 0)
      continue;  // a complete large frame waits: next() takes it
    auto got = ::read(proc_.from_child, p, room);
    if (got > 0) {
      frames_.commit(static_cast<std::size_t>(got));
      bytes_in_.fetch_add(static_cast<std::uint64_t>(got), std::memory_order_relaxed);
    } else if (got == 0 || (errno != EAGAIN && errno != EINTR)) {
      hand_back = true;  // EOF or an error: the I/O thread sees it too and handles the exit
    }
  }
  // Frames read past the reply may be all there is: the pipe would not wake the I/O thread.
  if (frames_.buffered() > 0)
    hand_back = true;
  if (!hand_back)
    frames_.release_if_empty();
  if (!arm_reader(true))
    hand_back = true;  // take_back arms it again
  {
    std::lock_guard<std::mutex> g{lend_mu_};
    lender_ = nullptr;
  }
  auto post_take_back = [this] {
    loop_.post([weak = weak_from_this()] {
      auto self = weak.lock();
      // Nothing due any more (on_readable took the pipe back first): a claim now would only
      // cut short the loan of the next lender.
      if (!self || (self->reader_.load() != reader_loop && !self->read_parked_ && !self->exit_parked_))
        return;
      if (!self->claim_reader())
        return;
      self->take_back();
      self->frames_.release_if_empty();
      self->release_reader();
    });
  };
  // Always consumed here: a wish left set would make every later loan hand back at once.
  bool wanted = reader_wanted_.exchange(false);
  if (hand_back || wanted) {
    handed_back_ = true;
    reader_.store(reader_loop);
    post_take_back();
  } else {
    reader_.store(reader_free);
    if (reader_wanted_.exchange(false))
      post_take_back();  // the I/O thread wished for it before it could see the pipe free
  }
  return true;
}

// ---- the I/O thread --------------------------------------------------------------------------

bool connection::claim_reader() {
  for (;;) {
    int s = reader_free;
    if (reader_.compare_exchange_strong(s, reader_loop))
      return true;
    if (s == reader_loop)
      return true;  // handed back by a lender: take_back() is due
    if (s == reader_closed)
      return false;
    reader_wanted_.store(true);
    kick_lender();
    if (reader_.load() == reader_lent)
      return false;  // the lender sees the wish on its way out and hands the pipe back
    if (!reader_wanted_.exchange(false))
      return false;  // it saw the wish after all: it hands back
    // It freed the pipe without seeing the wish: claim again.
  }
}

void connection::take_back() {
  reader_wanted_.store(false);  // the I/O thread holds the pipe: no wish is pending
  if (handed_back_) {
    handed_back_ = false;
    arm_reader(true);
    if (has_deferred_) {
      has_deferred_ = false;
      auto body = deferred_;
      auto owner = std::move(deferred_owner_);
      if (ev_.frame && !stopped_reading_ && ev_.frame(body, std::move(owner), 0) == frame_verdict::stop)
        stop_reading();
      deferred_copy_.clear();
    }
    read_frames();  // what the lender read past it
  }
  if (read_parked_) {
    read_parked_ = false;
    if (w_read_ && !paused_ && !stopped_reading_ && proc_.from_child >= 0)
      w_read_->start(UV_READABLE);
  }
  if (exit_parked_) {
    exit_parked_ = false;
    if (w_exit_)
      w_exit_->start(UV_READABLE);
  }
}

void connection::release_reader() {
  int s = reader_loop;
  reader_.compare_exchange_strong(s, reader_free);  // closed stays closed
}

} // namespace pyvisor::io
