// The supervisor actor: its behavior, the plan executor and its helpers (events) (the class:
// supervisor_actor_impl.hpp).

#include "supervision/supervisor_actor_impl.hpp"

namespace pyvisor::supervision {

caf::behavior supervisor_actor::make_behavior() {
  set_down_handler([this](caf::down_msg& m) { on_child_actor_down(m); });
  set_exit_handler([this](caf::exit_msg& m) {
    if (m.reason == caf::exit_reason::kill) {
      quit(m.reason);
      return;
    }
    final_stop(std::nullopt);
  });
  if (!cfg_.parent)
    start_all([this](const std::optional<error>& e) {
      if (!e)
        emit({supervision_event::started, cfg_.spec.name, "", 0, {}, duration{0}});
    });
  return {
    [this](core::child_up_atom, const caf::actor_addr& from, int pid) { on_up(from, pid); },
    [this](core::child_down_atom, const caf::actor_addr& from, exit_report& r) {
      on_down(from, std::move(r));
    },
    [this](backoff_done_atom, std::uint64_t token) {
      if (current_ && current_->kind == step::wait && token == wait_token_)
        complete(std::nullopt);
    },
    // As a nested supervisor (the child protocol).
    [this](core::child_start_atom) {
      if (!cfg_.parent || running_)
        return;
      window_ = restart_window{cfg_.spec.intensity, cfg_.spec.period};
      gave_up_ = false;
      for (auto& c : children_)
        c.backoff = restart_backoff{cfg_.spec.backoff};
      start_all([this](const std::optional<error>& e) {
        if (!e && running_)
          if (auto p = caf::actor_cast<caf::actor>(cfg_.parent))
            caf::anon_send(p, core::child_up_atom::value, address(), 0);
      });
    },
    [this](core::child_stop_atom, const shutdown_policy&) {
      if (!cfg_.parent)
        return;
      stop_all([this] {
        report_down(exit_report{exit_kind::shutdown, -1, 0,
                                make_error(errc::interpreter_down,
                                           "supervisor '" + cfg_.spec.name + "' was stopped")});
      });
    },
    // The facade / actor interface.
    [this](start_child_atom, child_spec& spec) { return start_child(std::move(spec)); },
    [this](terminate_child_atom, const std::string& id) { return terminate_child(id); },
    [this](restart_child_atom, const std::string& id) { return restart_child(id); },
    [this](delete_child_atom, const std::string& id) { return delete_child(id); },
    [this](which_children_atom) { return which_children(); },
    [this](count_children_atom) { return count_children(); },
    [this](subscribe_atom, const caf::actor& who) { subscribers_.push_back(who); },
    [this](stop_atom) {
      auto rp = make_response_promise();
      final_stop(rp);
      return rp;
    },
  };
}

void supervisor_actor::enqueue(step s) {
  plan_.push_back(std::move(s));
  advance();
}

void supervisor_actor::complete(const std::optional<error>& e) {
  auto s = std::move(*current_);
  current_.reset();
  if (s.done)
    s.done(e);
  advance();
}

void supervisor_actor::advance() {
  while (!current_ && !plan_.empty()) {
    auto s = std::move(plan_.front());
    plan_.pop_front();
    switch (s.kind) {
      case step::start: {
        auto c = find(s.id);
        if (c == nullptr || c->alive() || c->terminated) {
          if (s.done)
            s.done(c == nullptr ? std::optional{make_error(errc::invalid_argument,
                                                           "no child '" + s.id + "'")}
                                : std::nullopt);
          continue;
        }
        if (!c->actor) {
          auto a = cfg_.make(c->spec, caf::actor{this});
          if (!a) {
            // Could not even make it: a failed start, reported like one.
            current_ = std::move(s);
            c->state = child_info::starting;
            on_exit_of(*c, exit_report{exit_kind::start_failed, -1, 0, a.error()}, true);
            continue;
          }
          c->actor = *a;
          monitor(c->actor);
        }
        c->state = child_info::starting;
        ++c->starts;
        current_ = std::move(s);
        send(c->actor, core::child_start_atom::value);
        break;
      }
      case step::stop: {
        auto c = find(s.id);
        if (c == nullptr || !c->alive()) {
          if (s.done)
            s.done(std::nullopt);
          continue;
        }
        c->stop_requested = true;
        current_ = std::move(s);
        send(c->actor, core::child_stop_atom::value, c->shutdown());
        break;
      }
      case step::wait:
        if (s.delay.count() <= 0) {
          if (s.done)
            s.done(std::nullopt);
          continue;
        }
        current_ = std::move(s);
        delayed_send(this, current_->delay, backoff_done_atom::value, ++wait_token_);
        break;
      case step::finish:
        if (s.done)
          s.done(std::nullopt);
        continue;
    }
  }
}

void supervisor_actor::clear_plan() {
  plan_.clear();
  if (current_ && current_->kind == step::wait) {
    ++wait_token_;
    current_.reset();
  }
}

void supervisor_actor::start_all(std::function<void(const std::optional<error>&)> then) {
  running_ = true;
  for (auto& c : children_)
    if (!c.terminated)
      plan_.push_back({step::start, c.spec.id, duration{0}, nullptr});
  plan_.push_back({step::finish, "", duration{0}, [then = std::move(then)](auto& e) { then(e); }});
  advance();
}

void supervisor_actor::stop_all(std::function<void()> then) {
  clear_plan();
  for (auto i = children_.rbegin(); i != children_.rend(); ++i)
    plan_.push_back({step::stop, i->spec.id, duration{0}, nullptr});
  plan_.push_back({step::finish, "", duration{0}, [then = std::move(then)](auto&) { then(); }});
  advance();
}

child_rec* supervisor_actor::find(const std::string& id) {
  for (auto& c : children_)
    if (c.spec.id == id)
      return &c;
  return nullptr;
}

child_rec* supervisor_actor::find(const caf::actor_addr& a) {
  for (auto& c : children_)
    if (c.actor && c.actor.address() == a)
      return &c;
  return nullptr;
}

void supervisor_actor::remove_child(const std::string& id) {
  auto i = std::find_if(children_.begin(), children_.end(),
                        [&](auto& c) { return c.spec.id == id; });
  if (i == children_.end())
    return;
  if (i->actor) {
    demonitor(i->actor);
    anon_send_exit(i->actor, caf::exit_reason::user_shutdown);
  }
  children_.erase(i);
}

void supervisor_actor::emit(const supervision_event& e) {
  if (cfg_.on_event)
    cfg_.on_event(e);
  for (auto& s : subscribers_)
    send(s, supervision_event_atom::value, e);
}

caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_config cfg) {
  return sys.spawn<supervisor_actor>(std::move(cfg));
}

} // namespace pyvisor::supervision
