#include "pyvisor/interpreter.hpp"

#include <condition_variable>
#include <mutex>
#include <optional>

#include <caf/actor.hpp>
#include <caf/send.hpp>

#include "facade/interpreter_shared.hpp"
#include "protocol/message.hpp"
#include "pyvisor/actor_interface.hpp"

namespace pyvisor {

namespace detail {

interpreter_shared::~interpreter_shared() {
  if (actor)
    caf::anon_send(actor, stop_atom::value);
}

} // namespace detail

namespace {

/// One blocked caller. The I/O thread completes it straight from the request table.
struct waiter {
  std::mutex mu;
  std::condition_variable cv;
  std::optional<expected<value>> result;

  void set(expected<value> r) {
    {
      std::lock_guard<std::mutex> g{mu};
      result.emplace(std::move(r));
    }
    cv.notify_one();
  }
};

} // namespace

interpreter::interpreter(std::shared_ptr<detail::interpreter_shared> s) : s_(std::move(s)) {
}

expected<value> interpreter::eval(std::string_view code, const vars& v, const eval_options& o) {
  auto& ch = *s_->ch;
  auto id = ch.next_id();
  auto frame = protocol::encode_code_request(id, "eval", code, v, o.file, o.line);
  auto w = std::make_shared<waiter>();
  ch.submit(id, std::move(frame), [w](expected<value> r) { w->set(std::move(r)); });
  auto timeout = o.timeout.count() > 0 ? o.timeout : s_->opts.default_timeout;
  std::unique_lock<std::mutex> lk{w->mu};
  if (timeout.count() > 0) {
    if (!w->cv.wait_for(lk, timeout, [&] { return w->result.has_value(); })) {
      lk.unlock();
      if (ch.abandon(id))  // sends cancel(id) to the runner
        return make_error(errc::timeout, "eval did not finish within " +
                                           std::to_string(timeout.count()) + " ms");
      lk.lock();  // the reply won the race: it is being delivered right now
    }
  }
  w->cv.wait(lk, [&] { return w->result.has_value(); });
  return std::move(*w->result);
}

expected<void> interpreter::stop() {
  caf::anon_send(s_->actor, stop_atom::value);
  s_->st->wait([](interpreter_state s) { return s == interpreter_state::stopped; },
               std::chrono::milliseconds{0});
  return {};
}

expected<void> interpreter::wait_ready(std::chrono::milliseconds timeout) {
  auto s = s_->st->wait(
    [](interpreter_state s) {
      return s == interpreter_state::ready || s == interpreter_state::draining ||
             s == interpreter_state::stopped;
    },
    timeout);
  if (s == interpreter_state::ready)
    return {};
  if (s == interpreter_state::draining || s == interpreter_state::stopped) {
    std::lock_guard<std::mutex> g{s_->st->mu};
    if (s_->st->end_error)
      return *s_->st->end_error;
    return make_error(errc::interpreter_down, "interpreter was stopped before it was ready");
  }
  return make_error(errc::timeout, "interpreter not ready within " +
                                     std::to_string(timeout.count()) + " ms");
}

interpreter_state interpreter::state() const {
  return s_->st->get();
}

int interpreter::os_pid() const {
  return s_->ch->pid();
}

std::string interpreter::label() const {
  return s_->ch->label();
}

std::string interpreter::python_version() const {
  std::lock_guard<std::mutex> g{s_->st->mu};
  return s_->st->info.python_version;
}

caf::actor interpreter::actor() const {
  return s_->actor;
}

} // namespace pyvisor
