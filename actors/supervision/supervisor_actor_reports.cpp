// The supervisor actor: what its children report, and the OTP policy that answers: restart
// types, strategies, the intensity window, backoff, giving up.

#include "supervision/supervisor_actor_impl.hpp"

namespace pyvisor::supervision {

void supervisor_actor::on_up(const caf::actor_addr& from, int pid) {
  auto c = find(from);
  if (c == nullptr || c->state != child_info::starting)
    return;
  c->state = child_info::running;
  c->pid = pid;
  c->up_since = clock().now();
  emit({supervision_event::started, cfg_.spec.name, c->spec.id, pid, {}, duration{0}});
  if (current_ && current_->kind == step::start && current_->id == c->spec.id)
    complete(std::nullopt);
}

void supervisor_actor::on_down(const caf::actor_addr& from, exit_report r) {
  auto c = find(from);
  if (c == nullptr || !c->alive())
    return;
  on_exit_of(*c, std::move(r), false);
}

void supervisor_actor::on_child_actor_down(const caf::down_msg& m) {
  auto c = find(m.source);
  if (c == nullptr)
    return;
  c->actor = nullptr;  // made again at the next start
  if (!c->alive())
    return;
  on_exit_of(*c,
             exit_report{exit_kind::crash, -1, 0,
                         make_error(errc::interpreter_down,
                                    "the child's actor ended: " + system().render(m.reason))},
             false);
}

void supervisor_actor::on_exit_of(child_rec& c, exit_report r, bool in_advance) {
  bool requested = c.stop_requested;
  c.stop_requested = false;
  auto up = c.state == child_info::running
              ? std::chrono::duration_cast<duration>(clock().now() - c.up_since)
              : duration{0};
  if (c.state == child_info::starting && r.kind != exit_kind::shutdown)
    r.kind = exit_kind::start_failed;
  if (requested && r.kind != exit_kind::start_failed)
    r.kind = exit_kind::shutdown;
  c.state = child_info::stopped;
  c.pid = 0;
  c.last_exit = r;
  emit({supervision_event::exited, cfg_.spec.name, c.spec.id, 0, r, duration{0}});
  bool was_current = current_ && (current_->kind == step::start || current_->kind == step::stop) &&
                     current_->id == c.spec.id;
  std::optional<error> outcome;
  if (r.kind == exit_kind::start_failed || (r.kind != exit_kind::shutdown && !requested))
    outcome = r.reason;
  if (requested || c.terminated || gave_up_ || stopping_) {
    if (was_current)
      finish_current(outcome, in_advance);
    if (c.spec.restart == restart_type::temporary && !stopping_)
      remove_child(c.spec.id);
    return;
  }
  bool restart = c.spec.restart == restart_type::permanent ||
                 (c.spec.restart == restart_type::transient &&
                  (r.kind == exit_kind::crash || r.kind == exit_kind::start_failed));
  if (!restart) {
    // Not restarted: it stays down (restart_child can start it) or, temporary, goes.
    c.terminated = true;
    if (was_current)
      finish_current(outcome, in_advance);
    if (c.spec.restart == restart_type::temporary)
      remove_child(c.spec.id);
    return;
  }
  if (!window_.add(clock().now())) {
    // The plan goes (give_up replaces it) before a waiting start_child hears the outcome.
    std::function<void(const std::optional<error>&)> waiting;
    if (was_current) {
      waiting = std::move(current_->done);
      current_.reset();
    }
    give_up(r);
    if (waiting)
      waiting(outcome);
    return;
  }
  c.backoff.ended_after(up);
  auto delay = c.backoff.next(std::uniform_real_distribution<double>{0.0, 1.0}(rng_));
  emit({supervision_event::restarting, cfg_.spec.name, c.spec.id, 0, r, delay});
  plan_restart(c, delay, was_current, outcome, in_advance);
}

void supervisor_actor::finish_current(const std::optional<error>& e, bool in_advance) {
  auto s = std::move(*current_);
  current_.reset();
  if (s.done)
    s.done(e);
  if (!in_advance)
    advance();
}

void supervisor_actor::give_up(const exit_report& last) {
  gave_up_ = true;
  emit({supervision_event::gave_up, cfg_.spec.name, "", 0, last, duration{0}});
  auto report = exit_report{exit_kind::shutdown, -1, 0, last.reason};
  report.reason.message = "supervisor '" + cfg_.spec.name + "' gave up (intensity " +
                          std::to_string(cfg_.spec.intensity) + " in " +
                          std::to_string(cfg_.spec.period.count()) + " ms exceeded); last: " +
                          last.reason.message;
  stop_all([this, report] {
    running_ = false;
    if (cfg_.parent) {
      report_down(report);
      return;
    }
    end(report.reason);
  });
}

void supervisor_actor::report_down(const exit_report& r) {
  running_ = false;
  emit({supervision_event::stopped, cfg_.spec.name, "", 0, r, duration{0}});
  if (auto p = caf::actor_cast<caf::actor>(cfg_.parent))
    caf::anon_send(p, core::child_down_atom::value, address(), r);
}

void supervisor_actor::final_stop(std::optional<caf::response_promise> rp) {
  if (rp)
    stop_waiters_.push_back(*rp);
  if (stopping_)
    return;
  stopping_ = true;
  stop_all([this] {
    end(make_error(errc::interpreter_down, "supervisor '" + cfg_.spec.name + "' was stopped"));
  });
}

void supervisor_actor::end(const error& why) {
  for (auto& c : children_) {
    if (c.actor)
      anon_send_exit(c.actor, caf::exit_reason::user_shutdown);
    c.actor = nullptr;  // nothing of a stopped tree stays referenced from here
  }
  subscribers_.clear();
  if (!cfg_.parent || stopping_)
    emit({supervision_event::stopped, cfg_.spec.name, "",
          0, exit_report{exit_kind::shutdown, -1, 0, why}, duration{0}});
  for (auto& rp : stop_waiters_)
    rp.deliver(true);
  stop_waiters_.clear();
  for (auto& [rp, id] : dyn_waiters_)
    rp.deliver(to_caf_error(why));
  dyn_waiters_.clear();
  quit(gave_up_ ? caf::exit_reason::user_shutdown : caf::exit_reason::normal);
}

} // namespace pyvisor::supervision
