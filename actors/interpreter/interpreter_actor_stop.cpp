// The interpreter actor: stop sequences, the process's exit, and the actor's end.

#include "interpreter/interpreter_actor_impl.hpp"

namespace pyvisor::interp {

void interpreter_actor::begin_stop() {
  if (final_)
    return;
  final_ = true;
  auto s = a_.st->get();
  if (s == interpreter_state::stopped)
    return;
  a_.table->refuse(make_error(errc::interpreter_down, "interpreter '" + label() + "' is stopping"),
                   true);
  auto err = make_error(errc::interpreter_down, "interpreter is stopping");
  for (auto& w : waiters_)
    w.deliver(to_caf_error(err));
  waiters_.clear();
  if (!process_) {
    // Supervised, between two processes: nothing runs.
    a_.st->set(interpreter_state::stopped, err);
    finish(err, true);
    return;
  }
  a_.st->set(interpreter_state::draining);
  session_->set_stopping();
  // Before ready there is nothing to be graceful about.
  if (s == interpreter_state::spawning || s == interpreter_state::initializing) {
    session_->conn().signal_group(SIGKILL);
    return;
  }
  graceful_end(a_.opts.shutdown.graceful, a_.opts.shutdown.terminate);
}

void interpreter_actor::stop_process(const shutdown_policy& p) {
  if (stop_requested_)
    return;
  stop_requested_ = true;
  session_->set_stopping();
  auto s = a_.st->get();
  if (p.brutal_kill || s == interpreter_state::spawning || s == interpreter_state::initializing) {
    session_->conn().signal_group(SIGKILL);
    return;
  }
  if (p.grace == forever) {
    graceful_end(forever, forever);
    return;
  }
  graceful_end(p.grace, std::chrono::milliseconds{0});
}

void interpreter_actor::graceful_end(std::chrono::milliseconds graceful, std::chrono::milliseconds terminate) {
  session_->conn().write(protocol::encode_shutdown());
  session_->conn().close_after_flush();
  session_->conn().signal_group(SIGCONT);
  if (graceful == forever)
    return;
  if (terminate.count() > 0)
    later(graceful, term_atom::value, inc_);
  if (terminate != forever)
    later(graceful + terminate, kill_atom::value, inc_);
}

caf::response_promise interpreter_actor::stop_request(std::optional<std::chrono::milliseconds> deadline) {
  auto rp = make_response_promise();
  if (a_.supervised) {
    rp.deliver(to_caf_error(make_error(
      errc::invalid_argument,
      "a supervised interpreter is stopped through its supervisor (terminate_child)")));
    return rp;
  }
  if (a_.st->get() == interpreter_state::stopped) {
    rp.deliver(true);
    return rp;
  }
  stoppers_.push_back(rp);
  begin_stop();
  if (deadline && process_)
    later(*deadline, kill_atom::value, inc_);
  return rp;
}

caf::response_promise interpreter_actor::answer_now(const error& e) {
  auto rp = make_response_promise();
  rp.deliver(to_caf_error(e));
  return rp;
}

exit_report interpreter_actor::report_of(const exit_info& info) const {
  exit_report r;
  r.code = info.code;
  r.signal = info.signal;
  r.reason = info.reason;
  if (stop_requested_)
    r.kind = exit_kind::shutdown;
  else if (!ever_ready_)
    r.kind = exit_kind::start_failed;
  else if (info.code == 0 && info.signal == 0 && info.reason.code == errc::interpreter_exited)
    r.kind = exit_kind::normal;
  else
    r.kind = exit_kind::crash;
  return r;
}

void interpreter_actor::on_exit(exit_info& info) {
  process_ = false;
  auto report = report_of(info);
  if (a_.supervised && !final_) {
    // The handle stays: requests sent to the process were answered; new ones wait in the
    // stash for the next process, which the supervisor starts when its policy says so.
    a_.table->restarting(info.reason, a_.opts.restart_stash);
    a_.st->restarting(report);
    if (auto sup = caf::actor_cast<caf::actor>(a_.supervisor))
      send(sup, core::child_down_atom::value, address(), report);
    return;
  }
  {
    std::lock_guard<std::mutex> g{a_.st->mu};
    a_.st->last_exit = report;
    a_.st->last_exit_time = std::chrono::system_clock::now();
  }
  a_.table->refuse(info.reason, false);
  a_.st->set(interpreter_state::stopped, info.reason);
  finish(info.reason, final_);
}

void interpreter_actor::finish(const error& reason, bool requested) {
  auto cerr = to_caf_error(reason);
  for (auto& w : waiters_)
    w.deliver(cerr);
  waiters_.clear();
  // Completions of requests answered at the exit arrived before this message; anything
  // left gets the reason (each promise is delivered once).
  for (auto& [key, c] : calls_)
    c.rp.deliver(cerr);
  calls_.clear();
  for (auto& s : stoppers_)
    s.deliver(true);
  stoppers_.clear();
  if (requested)
    quit(caf::exit_reason::normal);
  else
    quit(cerr);
}

error interpreter_actor::end_error() const {
  std::lock_guard<std::mutex> g{a_.st->mu};
  if (a_.st->end_error)
    return *a_.st->end_error;
  return make_error(errc::interpreter_down, "interpreter is stopped");
}

} // namespace pyvisor::interp
