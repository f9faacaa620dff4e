// The interpreter actor: requests from the actor interface, the interrupt escalation of
// requests that outlive their deadline, the heartbeat, and kills with the Python stack.

#include "interpreter/interpreter_actor_impl.hpp"

namespace pyvisor::interp {

caf::response_promise interpreter_actor::forward(const pyvisor::interp::request& r, deadline d, std::uint64_t env) {
  auto rp = make_response_promise();
  if (rp.stages().empty() && rp.source()) {
    // The completion answers the requester itself, from the I/O thread (an enqueue without an
    // execution unit, as anon_send from any thread): no hop through this actor's mailbox.
    // The table calls every completion exactly once (at the latest when the connection is
    // lost or the table refuses), so every request still gets one answer.
    a_.table->submit(r, d, [to = rp.source(), mid = rp.id().response_id(), self = address(),
                            env](protocol::reply rep) {
      caf::message m;
      if (!rep.result)
        m = caf::make_message(to_caf_error(rep.result.error()));
      else if (env != 0)
        m = caf::make_message(env);  // make_env answers with the new env's id
      else
        m = caf::make_message(std::move(*rep.result));
      to->enqueue(caf::actor_cast<caf::strong_actor_ptr>(self), mid, std::move(m), nullptr);
    });
    return rp;
  }
  auto key = next_key_++;
  calls_.emplace(key, pending_call{rp, env});
  a_.table->submit(r, d, [self = address(), key](protocol::reply rep) {
    if (auto a = caf::actor_cast<caf::actor>(self))
      caf::anon_send(a, done_atom::value, key, call_result::from(std::move(rep)));
  });
  return rp;
}

void interpreter_actor::escalate(std::uint64_t id) {
  later(a_.opts.interrupt.grace, intr_check_atom::value, id);
}

void interpreter_actor::on_heartbeat(std::uint64_t inc, std::uint64_t seen) {
  if (inc != inc_ || !process_ || a_.st->get() != interpreter_state::ready || stop_requested_)
    return;
  auto& conn = session_->conn();
  auto now_seen = conn.heartbeats();
  auto now = clock().now();
  if (now_seen != seen || heartbeat_since_ == caf::actor_clock::time_point{})
    heartbeat_since_ = now;
  if (now - heartbeat_since_ >= a_.opts.heartbeat.timeout) {
    heartbeat_since_ = {};
    kill_with_stack(make_error(
      errc::interpreter_exited,
      "killed: no heartbeat from the runner for " +
        std::to_string(a_.opts.heartbeat.timeout.count()) +
        " ms (stopped, or native code holding the GIL)"));
    return;
  }
  later(a_.opts.heartbeat.interval, heartbeat_atom::value, inc_, now_seen);
}

void interpreter_actor::kill_with_stack(error e) {
  if (kill_reason_)
    return;  // a kill is under way
  kill_reason_ = std::move(e);
  if (!session_->conn().request_stack_dump()) {
    finish_kill();
    return;
  }
  later(dump_poll, dump_atom::value, inc_, 1);
}

void interpreter_actor::on_dump_poll(int polls) {
  if (!kill_reason_)
    return;
  auto got = session_->conn().read_stack_dump(dump_);
  // Done when the dump stopped growing, or when it never came (a stopped process).
  if ((dump_.empty() || got) && polls < dump_polls) {
    later(dump_poll, dump_atom::value, inc_, polls + 1);
    return;
  }
  finish_kill();
}

void interpreter_actor::finish_kill() {
  auto e = std::move(*kill_reason_);
  std::size_t start = 0;
  while (start < dump_.size()) {
    auto end = dump_.find('\n', start);
    if (end == std::string::npos)
      end = dump_.size();
    if (end > start)
      e.traceback.push_back(dump_.substr(start, end - start));
    start = end + 1;
  }
  if (!e.traceback.empty())
    e.message += "; Python stack at the kill in traceback";
  dump_.clear();
  session_->set_exit_reason(std::move(e));
  session_->conn().signal_group(SIGKILL);
}

void interpreter_actor::schedule_kill_check(std::uint64_t id) {
  if (a_.opts.interrupt.kill_after != forever)
    later(a_.opts.interrupt.kill_after, kill_check_atom::value, id);
}

} // namespace pyvisor::interp
