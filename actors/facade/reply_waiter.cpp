#include "facade/reply_waiter.hpp"

namespace pyvisor::detail {

void reply_waiter::set(protocol::reply r) {
  if (std::this_thread::get_id() == caller_) {
    // The caller itself, reading its reply (or answered at once): nobody waits.
    result_.emplace(std::move(r));
    done_.store(true);
    return;
  }
  {
    std::lock_guard<std::mutex> g{mu_};
    result_.emplace(std::move(r));
    done_.store(true);
  }
  if (polling_.load() && wake_)
    wake_->signal();
  cv_.notify_one();
}

protocol::reply reply_waiter::wait(interp::request_table* table,
                                   const interp::request_table::submitted& sent) {
  if (table != nullptr && sent.alone && wake_) {
    // Set before the check of `done_` (both seq_cst): a completion from elsewhere either is
    // seen by answered() or sees `polling_` and signals the wake.
    polling_.store(true);
    table->read_reply_here(sent.id, *wake_, [this] { return done_.load(); });
    polling_.store(false);
  }
  if (!done_.load()) {
    std::unique_lock<std::mutex> lk{mu_};
    cv_.wait(lk, [this] { return done_.load(); });
  }
  return std::move(*result_);
}

} // namespace pyvisor::detail
