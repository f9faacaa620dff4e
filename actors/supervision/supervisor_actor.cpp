#include "supervision/supervisor_actor.hpp"

#include <algorithm>
#include <deque>
#include <optional>
#include <random>

#include <caf/all.hpp>

#include "core/child_protocol.hpp"
#include "pyvisor/actor_interface.hpp"
#include "supervision/restart_policy.hpp"

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::child_spec)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::child_counts)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<pyvisor::child_info>)

namespace pyvisor::supervision {

namespace {

using backoff_done_atom = caf::atom_constant<caf::atom("s_backoff")>;
using clock_type = caf::actor_clock;

/// One child as its supervisor keeps it.
struct child_rec {
  child_spec spec;
  caf::actor actor;
  child_info::state_t state = child_info::stopped;
  int pid = 0;
  std::uint64_t starts = 0;
  std::optional<exit_report> last_exit;
  clock_type::time_point up_since{};
  restart_backoff backoff;
  bool stop_requested = false;
  bool terminated = false;  // terminate_child: stays down until restart_child

  child_rec(child_spec s, backoff_policy b) : spec(std::move(s)), backoff(b) {}

  /// Nested supervisors and pools (both supervise their own processes).
  bool is_supervisor() const { return spec.supervisor != nullptr || spec.pool != nullptr; }
  bool alive() const { return state == child_info::starting || state == child_info::running; }
  shutdown_policy shutdown() const {
    if (spec.shutdown)
      return *spec.shutdown;
    return is_supervisor() ? shutdown_policy{false, forever} : shutdown_policy{};
  }
};

/// A step of the supervisor's plan; the plan runs one step at a time.
struct step {
  enum kind_t : std::uint8_t { start, stop, wait, finish } kind;
  std::string id;
  duration delay{0};
  std::function<void(const std::optional<error>&)> done;  // nullopt: it worked
};

class supervisor_actor : public caf::event_based_actor {
public:
  supervisor_actor(caf::actor_config& cfg, supervisor_config c)
    : caf::event_based_actor(cfg), cfg_(std::move(c)),
      window_(cfg_.spec.intensity, cfg_.spec.period), rng_(cfg_.seed) {
    for (auto& s : cfg_.spec.children)
      children_.emplace_back(s, cfg_.spec.backoff);
  }

  caf::behavior make_behavior() override {
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

private:
  // ---- the plan --------------------------------------------------------------------------

  void enqueue(step s) {
    plan_.push_back(std::move(s));
    advance();
  }

  void complete(const std::optional<error>& e) {
    auto s = std::move(*current_);
    current_.reset();
    if (s.done)
      s.done(e);
    advance();
  }

  void advance() {
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

  /// Drops the plan (a wait in progress is abandoned; a start or stop in progress finishes,
  /// its child reports anyway).
  void clear_plan() {
    plan_.clear();
    if (current_ && current_->kind == step::wait) {
      ++wait_token_;
      current_.reset();
    }
  }

  void start_all(std::function<void(const std::optional<error>&)> then) {
    running_ = true;
    for (auto& c : children_)
      if (!c.terminated)
        plan_.push_back({step::start, c.spec.id, duration{0}, nullptr});
    plan_.push_back({step::finish, "", duration{0}, [then = std::move(then)](auto& e) { then(e); }});
    advance();
  }

  /// Stops every child in reverse order, then runs `then`.
  void stop_all(std::function<void()> then) {
    clear_plan();
    for (auto i = children_.rbegin(); i != children_.rend(); ++i)
      plan_.push_back({step::stop, i->spec.id, duration{0}, nullptr});
    plan_.push_back({step::finish, "", duration{0}, [then = std::move(then)](auto&) { then(); }});
    advance();
  }

  // ---- children's reports ------------------------------------------------------------------

  void on_up(const caf::actor_addr& from, int pid) {
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

  void on_down(const caf::actor_addr& from, exit_report r) {
    auto c = find(from);
    if (c == nullptr || !c->alive())
      return;
    on_exit_of(*c, std::move(r), false);
  }

  void on_child_actor_down(const caf::down_msg& m) {
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

  /// Child `c` ended (its incarnation). `in_advance`: called from advance() (no current step
  /// to complete for it beyond the one set there).
  void on_exit_of(child_rec& c, exit_report r, bool in_advance) {
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

  void finish_current(const std::optional<error>& e, bool in_advance) {
    auto s = std::move(*current_);
    current_.reset();
    if (s.done)
      s.done(e);
    if (!in_advance)
      advance();
  }

  void plan_restart(child_rec& c, duration delay, bool was_current,
                    const std::optional<error>& outcome, bool in_advance) {
    auto idx = static_cast<std::size_t>(&c - children_.data());
    std::function<void(const std::optional<error>&)> waiting;  // a start_child/restart_child reply
    if (was_current) {
      waiting = std::move(current_->done);
      current_.reset();
    }
    (void) outcome;
    std::vector<step> steps;
    auto strategy = cfg_.spec.strategy;
    if (strategy == restart_strategy::one_for_one) {
      steps.push_back({step::wait, "", delay, nullptr});
      steps.push_back({step::start, c.spec.id, duration{0}, std::move(waiting)});
      if (was_current) {
        // It failed its start: it restarts before the children queued behind it.
        for (auto i = steps.rbegin(); i != steps.rend(); ++i)
          plan_.push_front(std::move(*i));
      } else {
        for (auto& s : steps)
          plan_.push_back(std::move(s));
      }
    } else {
      std::size_t from = strategy == restart_strategy::one_for_all ? 0 : idx;
      std::vector<std::string> pending_starts;
      for (auto& s : plan_)
        if (s.kind == step::start)
          pending_starts.push_back(s.id);
      clear_plan();
      for (std::size_t i = children_.size(); i-- > from;)
        if (i != idx)
          plan_.push_back({step::stop, children_[i].spec.id, duration{0}, nullptr});
      plan_.push_back({step::wait, "", delay, nullptr});
      for (std::size_t i = 0; i < children_.size(); ++i) {
        auto& k = children_[i];
        bool in_set = i >= from;
        bool pending = std::find(pending_starts.begin(), pending_starts.end(), k.spec.id) !=
                       pending_starts.end();
        if ((in_set || pending) && !k.terminated &&
            (k.spec.restart != restart_type::temporary || i == idx))
          plan_.push_back({step::start, k.spec.id, duration{0},
                           i == idx ? std::move(waiting) : nullptr});
      }
      // Temporary siblings are stopped, never restarted (OTP): forget them once down.
      for (std::size_t i = from; i < children_.size(); ++i)
        if (i != idx && children_[i].spec.restart == restart_type::temporary)
          children_[i].terminated = true;
    }
    if (!in_advance)
      advance();
  }

  void give_up(const exit_report& last) {
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

  void report_down(const exit_report& r) {
    running_ = false;
    emit({supervision_event::stopped, cfg_.spec.name, "", 0, r, duration{0}});
    if (auto p = caf::actor_cast<caf::actor>(cfg_.parent))
      caf::anon_send(p, core::child_down_atom::value, address(), r);
  }

  /// Stops every child (reverse order) and then this supervisor for good.
  void final_stop(std::optional<caf::response_promise> rp) {
    if (rp)
      stop_waiters_.push_back(*rp);
    if (stopping_)
      return;
    stopping_ = true;
    stop_all([this] {
      end(make_error(errc::interpreter_down, "supervisor '" + cfg_.spec.name + "' was stopped"));
    });
  }

  void end(const error& why) {
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

  // ---- the facade's requests ----------------------------------------------------------------

  caf::response_promise start_child(child_spec spec) {
    auto rp = make_response_promise();
    if (auto e = refuse_while_ending()) {
      rp.deliver(to_caf_error(*e));
      return rp;
    }
    if (spec.id.empty() || find(spec.id) != nullptr) {
      rp.deliver(to_caf_error(make_error(
        errc::invalid_argument, "a child needs an id unique in its supervisor ('" + spec.id + "')")));
      return rp;
    }
    if (int(spec.interpreter.has_value()) + int(spec.supervisor != nullptr) +
          int(spec.pool != nullptr) != 1) {
      rp.deliver(to_caf_error(make_error(
        errc::invalid_argument, "a child spec needs exactly one of interpreter, supervisor, pool")));
      return rp;
    }
    auto id = spec.id;
    children_.emplace_back(std::move(spec), cfg_.spec.backoff);
    enqueue({step::start, id, duration{0}, reply_to(rp)});
    return rp;
  }

  caf::response_promise terminate_child(const std::string& id) {
    auto rp = make_response_promise();
    auto c = find(id);
    if (c == nullptr) {
      rp.deliver(to_caf_error(make_error(errc::invalid_argument, "no child '" + id + "'")));
      return rp;
    }
    c->terminated = true;
    // Dropped from the plan: a restart of it that was waiting.
    plan_.erase(std::remove_if(plan_.begin(), plan_.end(),
                               [&](const step& s) { return s.kind == step::start && s.id == id && !s.done; }),
                plan_.end());
    enqueue({step::stop, id, duration{0}, reply_to(rp, true)});
    return rp;
  }

  caf::response_promise restart_child(const std::string& id) {
    auto rp = make_response_promise();
    auto c = find(id);
    if (auto e = refuse_while_ending()) {
      rp.deliver(to_caf_error(*e));
    } else if (c == nullptr) {
      rp.deliver(to_caf_error(make_error(errc::invalid_argument, "no child '" + id + "'")));
    } else if (c->alive() || !c->terminated) {
      rp.deliver(to_caf_error(make_error(errc::invalid_argument, "child '" + id + "' is " +
                                                                   (c->alive() ? "running" : "restarting"))));
    } else {
      c->terminated = false;
      enqueue({step::start, id, duration{0}, reply_to(rp)});
    }
    return rp;
  }

  caf::response_promise delete_child(const std::string& id) {
    auto rp = make_response_promise();
    auto c = find(id);
    if (c == nullptr) {
      rp.deliver(to_caf_error(make_error(errc::invalid_argument, "no child '" + id + "'")));
    } else if (c->alive() || !c->terminated) {
      rp.deliver(to_caf_error(make_error(
        errc::invalid_argument, "child '" + id + "' is not terminated (terminate_child first)")));
    } else {
      remove_child(id);
      rp.deliver(true);
    }
    return rp;
  }

  std::vector<child_info> which_children() {
    std::vector<child_info> out;
    auto now = clock().now();
    for (auto& c : children_) {
      child_info i;
      i.id = c.spec.id;
      i.is_supervisor = c.is_supervisor();
      i.state = c.state;
      if (c.state == child_info::stopped && !c.terminated && running_ && !gave_up_ && !stopping_)
        i.state = child_info::restarting;
      i.pid = c.pid;
      i.restarts = c.starts > 0 ? c.starts - 1 : 0;
      i.last_exit = c.last_exit;
      if (c.state == child_info::running)
        i.uptime = std::chrono::duration_cast<duration>(now - c.up_since);
      out.push_back(std::move(i));
    }
    return out;
  }

  child_counts count_children() {
    child_counts n;
    for (auto& c : children_) {
      ++n.specs;
      if (c.state == child_info::running)
        ++n.active;
      if (c.is_supervisor())
        ++n.supervisors;
      else
        ++n.workers;
    }
    return n;
  }

  std::function<void(const std::optional<error>&)> reply_to(caf::response_promise rp,
                                                           bool always_ok = false) {
    auto key = next_waiter_++;
    dyn_waiters_.emplace_back(rp, key);
    return [this, key, always_ok](const std::optional<error>& e) {
      auto i = std::find_if(dyn_waiters_.begin(), dyn_waiters_.end(),
                            [&](auto& w) { return w.second == key; });
      if (i == dyn_waiters_.end())
        return;
      if (e && !always_ok)
        i->first.deliver(to_caf_error(*e));
      else
        i->first.deliver(true);
      dyn_waiters_.erase(i);
    };
  }

  std::optional<error> refuse_while_ending() const {
    if (stopping_ || gave_up_)
      return make_error(errc::shutting_down, "supervisor '" + cfg_.spec.name + "' is stopping");
    return std::nullopt;
  }

  // ---- helpers -----------------------------------------------------------------------------

  child_rec* find(const std::string& id) {
    for (auto& c : children_)
      if (c.spec.id == id)
        return &c;
    return nullptr;
  }

  child_rec* find(const caf::actor_addr& a) {
    for (auto& c : children_)
      if (c.actor && c.actor.address() == a)
        return &c;
    return nullptr;
  }

  void remove_child(const std::string& id) {
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

  void emit(const supervision_event& e) {
    if (cfg_.on_event)
      cfg_.on_event(e);
    for (auto& s : subscribers_)
      send(s, supervision_event_atom::value, e);
  }

  supervisor_config cfg_;
  std::vector<child_rec> children_;
  restart_window window_;
  std::minstd_rand rng_;
  std::deque<step> plan_;
  std::optional<step> current_;
  std::uint64_t wait_token_ = 0;
  bool running_ = false;
  bool gave_up_ = false;
  bool stopping_ = false;
  std::vector<caf::actor> subscribers_;
  std::vector<caf::response_promise> stop_waiters_;
  std::vector<std::pair<caf::response_promise, std::uint64_t>> dyn_waiters_;
  std::uint64_t next_waiter_ = 1;
};

} // namespace

caf::actor spawn_supervisor(caf::actor_system& sys, supervisor_config cfg) {
  return sys.spawn<supervisor_actor>(std::move(cfg));
}

} // namespace pyvisor::supervision
