#pragma once

// The supervisor actor's class, shared by the files that implement it (one concept each):
// supervisor_actor.cpp (behavior, the plan executor: one start/stop/wait step at a time, and
// helpers), supervisor_actor_reports.cpp (children's reports: the OTP policy of restarts,
// intensity and backoff), supervisor_actor_requests.cpp (the facade's requests: dynamic
// children, which/count, stop). Internal to actors/supervision.

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

  caf::behavior make_behavior() override;

private:
  // ---- the plan --------------------------------------------------------------------------

  void enqueue(step s);

  void complete(const std::optional<error>& e);

  void advance();

  /// Drops the plan (a wait in progress is abandoned; a start or stop in progress finishes,
  /// its child reports anyway).
  void clear_plan();

  void start_all(std::function<void(const std::optional<error>&)> then);

  /// Stops every child in reverse order, then runs `then`.
  void stop_all(std::function<void()> then);

  // ---- children's reports ------------------------------------------------------------------

  void on_up(const caf::actor_addr& from, int pid);

  void on_down(const caf::actor_addr& from, exit_report r);

  void on_child_actor_down(const caf::down_msg& m);

  /// Child `c` ended (its incarnation). `in_advance`: called from advance() (no current step
  /// to complete for it beyond the one set there).
  void on_exit_of(child_rec& c, exit_report r, bool in_advance);

  void finish_current(const std::optional<error>& e, bool in_advance);

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

  void give_up(const exit_report& last);

  void report_down(const exit_report& r);

  /// Stops every child (reverse order) and then this supervisor for good.
  void final_stop(std::optional<caf::response_promise> rp);

  void end(const error& why);

  // ---- the facade's requests ----------------------------------------------------------------

  caf::response_promise start_child(child_spec spec);

  caf::response_promise terminate_child(const std::string& id);

  caf::response_promise restart_child(const std::string& id);

  caf::response_promise delete_child(const std::string& id);

  std::vector<child_info> which_children();

  child_counts count_children();

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

  std::optional<error> refuse_while_ending() const;

  // ---- helpers -----------------------------------------------------------------------------

  child_rec* find(const std::string& id);

  child_rec* find(const caf::actor_addr& a);

  void remove_child(const std::string& id);

  void emit(const supervision_event& e);

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

} // namespace pyvisor::supervision
