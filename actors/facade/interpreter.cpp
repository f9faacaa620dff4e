#include "pyvisor/interpreter.hpp"

#include <mutex>
#include <optional>

#include <caf/actor.hpp>
#include <caf/scoped_actor.hpp>
#include <caf/send.hpp>

#include "facade/blocking_call.hpp"
#include "facade/env_shared.hpp"
#include "facade/reply_waiter.hpp"
#include "facade/interpreter_shared.hpp"
#include "interpreter/messages.hpp"
#include "protocol/message.hpp"
#include "pyvisor/actor_interface.hpp"

namespace pyvisor {

namespace detail {

interpreter_shared::~interpreter_shared() {
  if (actor)
    caf::anon_send(actor, stop_atom::value);
}

namespace {

void fill_capture(const eval_options& o, protocol::reply& r) {
  if (o.capture != nullptr) {
    o.capture->out = r.out.value_or(std::string{});
    o.capture->err = r.err.value_or(std::string{});
  }
}

} // namespace

protocol::reply blocking_call(interpreter_shared& s, const interp::request& r, interp::deadline d) {
  auto w = std::make_shared<reply_waiter>(s.table->wake_of_this_thread());
  auto sent = s.table->submit(r, d, [w](protocol::reply rep) { w->set(std::move(rep)); });
  return w->wait(s.table.get(), sent);
}

expected<value> blocking_value(interpreter_shared& s, interp::request& r, const eval_options& o) {
  if (auto e = interp::check_timeout(o.timeout))
    return *e;
  r.file = o.file;
  r.line = o.line;
  r.capture = o.capture != nullptr;
  r.bytes_as_bytearray = o.bytes_as_bytearray;
  r.bytes_as_memoryview = o.bytes_as_memoryview;
  r.replay = o.replay;
  auto rep = blocking_call(s, r, interp::deadline_for(o.timeout, s.opts.default_timeout));
  fill_capture(o, rep);
  return std::move(rep.result);
}

void env_shared::drop() {
  if (destroyed.exchange(true))
    return;
  interp->table->drop_env(id);
}

} // namespace detail

namespace {

interp::request eval_request_for(std::string_view code, const vars& v, std::uint64_t env = 0) {
  interp::request r;
  r.op = interp::request::op_t::eval;
  r.text = code;
  r.bound = &v;
  r.env = env;
  return r;
}

interp::request call_request_for(std::string_view name, const std::vector<arg>& args,
                                 const vars& kwargs, std::uint64_t env = 0) {
  interp::request r;
  r.op = interp::request::op_t::call;
  r.text = name;
  r.args = &args;
  r.bound = &kwargs;
  r.env = env;
  return r;
}

} // namespace

interpreter::interpreter(std::shared_ptr<detail::interpreter_shared> s) : s_(std::move(s)) {
}

expected<value> interpreter::eval(std::string_view code, const vars& v, const eval_options& o) {
  auto r = eval_request_for(code, v);
  return detail::blocking_value(*s_, r, o);
}

void interpreter::eval_async(std::string_view code, const vars& v, const eval_options& o,
                             std::function<void(expected<value>)> done) {
  if (auto e = interp::check_timeout(o.timeout)) {
    done(std::move(*e));
    return;
  }
  auto r = eval_request_for(code, v);
  r.file = o.file;
  r.line = o.line;
  r.capture = o.capture != nullptr;
  r.bytes_as_bytearray = o.bytes_as_bytearray;
  r.bytes_as_memoryview = o.bytes_as_memoryview;
  r.replay = o.replay;
  s_->table->submit(r, interp::deadline_for(o.timeout, s_->opts.default_timeout),
                    [capture = o.capture, done = std::move(done)](protocol::reply rep) {
                      if (capture != nullptr) {
                        capture->out = rep.out.value_or(std::string{});
                        capture->err = rep.err.value_or(std::string{});
                      }
                      done(std::move(rep.result));
                    });
}

interpreter_stats interpreter::stats() const {
  auto s = s_->table->stats();
  std::lock_guard<std::mutex> g{s_->st->mu};
  s.restarts = s_->st->restarts;
  s.last_exit = s_->st->last_exit;
  s.last_exit_time = s_->st->last_exit_time;
  if (s_->st->state == interpreter_state::ready)
    s.uptime = std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::steady_clock::now() - s_->st->ready_since);
  return s;
}

expected<value> interpreter::call(std::string_view name, const std::vector<arg>& args,
                                  const vars& kwargs, const eval_options& o) {
  auto r = call_request_for(name, args, kwargs);
  return detail::blocking_value(*s_, r, o);
}

expected<env> interpreter::make_env(const env_options& o) {
  if (auto e = interp::check_timeout(o.timeout))
    return *e;
  std::vector<protocol::env_spec> from;
  for (const auto& src : o.from) {
    if (auto e = interp::check_env_source(src.only.has_value(), src.except.has_value()))
      return *e;
    if (!src.source.s_ || src.source.s_->interp != s_)
      return make_error(errc::invalid_argument, "an env source belongs to another interpreter");
    if (src.source.s_->destroyed.load())
      return make_error(errc::env_not_found,
                        "env " + std::to_string(src.source.id()) + " was destroyed");
    from.push_back({src.source.id(), src.only, src.except});
  }
  if (s_->st->get() == interpreter_state::stopped)
    return make_error(errc::env_lost, "the interpreter is stopped");
  auto shared = std::make_shared<detail::env_shared>();
  shared->interp = s_;
  shared->id = s_->table->next_env_id();
  shared->durable = o.durable;
  interp::request r;
  r.op = interp::request::op_t::make_env;
  r.env = shared->id;
  r.from = &from;
  r.bound = &o.vars;
  r.durable = o.durable;
  auto rep = detail::blocking_call(*s_, r, interp::deadline_for(o.timeout, s_->opts.default_timeout));
  if (!rep.result) {
    shared->destroyed = true;  // nothing to drop
    return std::move(rep.result).error();
  }
  return env{std::move(shared)};
}

expected<std::size_t> interpreter::interrupt() {
  // One path with the actor interface: the actor cancels, interrupts and schedules the kill
  // bound for every request in flight; it answers once the cancels went out.
  caf::scoped_actor self{s_->actor->home_system()};
  expected<std::size_t> out = make_error(errc::interpreter_down, "interpreter is stopped");
  self->request(s_->actor, caf::infinite, interrupt_atom::value)
    .receive([&](std::size_t n) { out = n; },
             [&](const caf::error&) {
               if (s_->st->get() != interpreter_state::stopped)
                 out = make_error(errc::interpreter_down, "interpreter is stopping");
             });
  return out;
}

expected<void> interpreter::stop(std::chrono::milliseconds deadline) {
  if (s_->supervised)
    return make_error(errc::invalid_argument,
                      "a supervised interpreter is stopped through its supervisor (terminate_child)");
  if (deadline != forever && deadline.count() < 0)
    return make_error(errc::invalid_argument, "a stop deadline must not be negative");
  if (deadline == forever)
    caf::anon_send(s_->actor, stop_atom::value);
  else
    caf::anon_send(s_->actor, stop_atom::value, deadline);
  s_->st->wait([](interpreter_state s) { return s == interpreter_state::stopped; }, forever);
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
  std::lock_guard<std::mutex> g{s_->st->mu};
  return s_->st->pid;
}

std::string interpreter::label() const {
  std::lock_guard<std::mutex> g{s_->st->mu};
  return s_->st->label.empty() ? s_->opts.label : s_->st->label;
}

std::string interpreter::python_version() const {
  std::lock_guard<std::mutex> g{s_->st->mu};
  return s_->st->info.python_version;
}

caf::actor interpreter::actor() const {
  return s_->actor;
}

// ---- env ------------------------------------------------------------------------------------

env::env(std::shared_ptr<detail::env_shared> s) : s_(std::move(s)) {
}

namespace {

/// env_lost when the env's interpreter is gone; env_not_found when the env was destroyed.
std::optional<error> env_unusable(const detail::env_shared& e) {
  if (e.destroyed.load())
    return make_error(errc::env_not_found, "env " + std::to_string(e.id) + " was destroyed");
  if (auto lost = e.interp->table->env_error(e.id))
    return *lost;
  if (e.interp->st->get() == interpreter_state::stopped) {
    std::string why;
    {
      std::lock_guard<std::mutex> g{e.interp->st->mu};
      if (e.interp->st->end_error)
        why = ": " + e.interp->st->end_error->message;
    }
    return make_error(errc::env_lost, "env " + std::to_string(e.id) +
                                        " is lost: its interpreter stopped" + why);
  }
  return std::nullopt;
}

} // namespace

expected<value> env::eval(std::string_view code, const vars& v, const eval_options& o) {
  if (auto e = env_unusable(*s_))
    return *e;
  auto r = eval_request_for(code, v, s_->id);
  return detail::blocking_value(*s_->interp, r, o);
}

expected<value> env::call(std::string_view name, const std::vector<arg>& args, const vars& kwargs,
                          const eval_options& o) {
  if (auto e = env_unusable(*s_))
    return *e;
  auto r = call_request_for(name, args, kwargs, s_->id);
  return detail::blocking_value(*s_->interp, r, o);
}

void env::destroy() {
  s_->drop();
}

std::uint64_t env::id() const noexcept {
  return s_->id;
}

bool env::durable() const noexcept {
  return s_->durable;
}

} // namespace pyvisor
