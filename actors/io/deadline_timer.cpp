#include "io/deadline_timer.hpp"

#include <algorithm>

namespace pyvisor::io {

std::shared_ptr<deadline_timer> deadline_timer::make(io_loop& loop, std::function<void()> on_fire) {
  return std::shared_ptr<deadline_timer>{new deadline_timer{loop, std::move(on_fire)}};
}

void deadline_timer::arm_at(clock::time_point t) {
  {
    std::lock_guard<std::mutex> g{mu_};
    if (closed_ || t >= armed_)
      return;
    armed_ = t;
  }
  loop_.post([self = shared_from_this()] { self->restart(); });
}

void deadline_timer::restart() {
  clock::time_point at;
  {
    std::lock_guard<std::mutex> g{mu_};
    if (closed_ || armed_ == clock::time_point::max())
      return;
    at = armed_;
  }
  if (!started_) {
    uv_timer_init(loop_.loop(), &timer_);
    timer_.data = static_cast<loop_handle*>(this);
    started_ = true;
    self_ = shared_from_this();
  }
  auto left = std::chrono::ceil<std::chrono::milliseconds>(at - clock::now()).count();
  uv_timer_start(&timer_, &deadline_timer::fired, static_cast<std::uint64_t>(std::max<long>(left, 0)), 0);
}

void deadline_timer::fired(uv_timer_t* h) {
  auto* self = static_cast<deadline_timer*>(static_cast<loop_handle*>(h->data));
  bool early;
  {
    std::lock_guard<std::mutex> g{self->mu_};
    if (self->closed_)
      return;
    early = clock::now() < self->armed_;  // uv rounds to milliseconds
    if (!early)
      self->armed_ = clock::time_point::max();
  }
  if (early)
    self->restart();
  else if (self->on_fire_)
    self->on_fire_();
}

void deadline_timer::close() {
  {
    std::lock_guard<std::mutex> g{mu_};
    if (closed_)
      return;
    closed_ = true;
  }
  loop_.post([self = shared_from_this()] {
    self->on_fire_ = nullptr;
    auto* h = reinterpret_cast<uv_handle_t*>(&self->timer_);
    if (!self->started_ || uv_is_closing(h))
      return;  // never started, or the loop's final walk closed it (handle_closed ran)
    uv_timer_stop(&self->timer_);
    uv_close(h, [](uv_handle_t* c) { static_cast<loop_handle*>(c->data)->handle_closed(); });
  });
}

void deadline_timer::handle_closed() {
  on_fire_ = nullptr;
  self_.reset();  // may delete *this
}

} // namespace pyvisor::io
