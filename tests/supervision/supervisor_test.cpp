// The supervisor's logic under CAF's deterministic test_coordinator with simulated time: an
// OTP-style matrix (strategies, restart types x exit kinds, intensity and escalation, start
// and stop order, dynamic children) plus backoff. Children are small actors that speak the
// child protocol (core/child_protocol.hpp) and do what the test tells them; no process runs.

#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include <caf/all.hpp>
#include <caf/scheduler/test_coordinator.hpp>

#include "core/child_protocol.hpp"
#include "supervision/restart_policy.hpp"
#include "supervision/supervisor_actor.hpp"

using namespace pyvisor;
using namespace std::chrono_literals;
using core::child_down_atom;
using core::child_start_atom;
using core::child_stop_atom;
using core::child_up_atom;

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::child_spec)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::child_counts)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(std::vector<pyvisor::child_info>)

namespace {

using end_atom = caf::atom_constant<caf::atom("t_end")>;

/// What the fake children did, in order: "start a", "stop b", ...
struct world {
  std::vector<std::string> log;
  std::map<std::string, int> starts;
  std::map<std::string, bool> fail_start;  // answer child_start with start_failed
  std::map<std::string, caf::actor> actors;
  std::vector<supervision_event> events;
  int next_pid = 100;
};

class fake_child : public caf::event_based_actor {
public:
  fake_child(caf::actor_config& cfg, world* w, std::string id, caf::actor_addr sup)
    : caf::event_based_actor(cfg), w_(w), id_(std::move(id)), sup_(std::move(sup)) {
  }

  caf::behavior make_behavior() override {
    return {
      [this](child_start_atom) {
        w_->log.push_back("start " + id_);
        ++w_->starts[id_];
        if (w_->fail_start[id_]) {
          send(caf::actor_cast<caf::actor>(sup_), child_down_atom::value, address(),
               exit_report{exit_kind::start_failed, 1, 0,
                           make_error(errc::init_failed, id_ + ": init raised")});
          return;
        }
        running_ = true;
        send(caf::actor_cast<caf::actor>(sup_), child_up_atom::value, address(), w_->next_pid++);
      },
      [this](child_stop_atom, const shutdown_policy&) {
        if (!running_)
          return;
        running_ = false;
        w_->log.push_back("stop " + id_);
        send(caf::actor_cast<caf::actor>(sup_), child_down_atom::value, address(),
             exit_report{exit_kind::shutdown, -1, 0, make_error(errc::interpreter_down, "stopped")});
      },
      [this](end_atom, exit_kind k) {  // the test makes it end by itself
        if (!running_)
          return;
        running_ = false;
        w_->log.push_back("end " + id_);
        auto code = k == exit_kind::normal ? 0 : 1;
        send(caf::actor_cast<caf::actor>(sup_), child_down_atom::value, address(),
             exit_report{k, code, 0, make_error(errc::interpreter_exited, id_ + " ended")});
      },
    };
  }

private:
  world* w_;
  std::string id_;
  caf::actor_addr sup_;  // weak, as a real child holds its supervisor
  bool running_ = false;
};

struct test_config : caf::actor_system_config {
  test_config() {
    set("scheduler.policy", caf::atom("testing"));
    set("logger.verbosity", caf::atom("quiet"));
  }
};

child_spec worker(std::string id, restart_type r = restart_type::permanent) {
  child_spec c;
  c.id = std::move(id);
  c.interpreter = interpreter_options{};
  c.restart = r;
  return c;
}

class supervisor_test : public ::testing::Test {
protected:
  test_config cfg_;
  caf::actor_system sys_{cfg_};
  caf::scheduler::test_coordinator& sched_ =
    dynamic_cast<caf::scheduler::test_coordinator&>(sys_.scheduler());
  world w_;
  caf::actor sup_;
  caf::scoped_actor self_{sys_};

  void TearDown() override {
    if (sup_)
      anon_send_exit(sup_, caf::exit_reason::kill);
    for (auto& [id, a] : w_.actors)
      anon_send_exit(a, caf::exit_reason::kill);
    sched_.run();
  }

  supervision::child_factory factory() {
    return [this](const child_spec& spec, const caf::actor& sup) -> expected<caf::actor> {
      if (spec.supervisor) {
        supervision::supervisor_config cfg;
        cfg.spec = *spec.supervisor;
        cfg.make = factory();
        cfg.on_event = [this](const supervision_event& e) { w_.events.push_back(e); };
        cfg.parent = sup.address();
        auto a = supervision::spawn_supervisor(sys_, std::move(cfg));
        w_.actors[spec.id] = a;
        return a;
      }
      auto a = sys_.spawn<fake_child>(&w_, spec.id, sup.address());
      w_.actors[spec.id] = a;
      return a;
    };
  }

  void start(supervisor_spec spec) {
    supervision::supervisor_config cfg;
    cfg.spec = std::move(spec);
    cfg.make = factory();
    cfg.on_event = [this](const supervision_event& e) { w_.events.push_back(e); };
    cfg.seed = 42;
    sup_ = supervision::spawn_supervisor(sys_, std::move(cfg));
    sched_.run();
  }

  void end(const std::string& id, exit_kind k = exit_kind::crash) {
    caf::anon_send(w_.actors.at(id), end_atom::value, k);
    sched_.run();
  }

  std::vector<std::string> take_log() {
    auto l = std::move(w_.log);
    w_.log.clear();
    return l;
  }

  std::vector<child_info> which() {
    std::vector<child_info> out;
    auto h = self_->request(sup_, caf::infinite, which_children_atom::value);
    sched_.run();
    h.receive([&](std::vector<child_info>& v) { out = std::move(v); },
              [&](caf::error& e) { ADD_FAILURE() << sys_.render(e); });
    return out;
  }

  /// Sends `xs` as a request and returns the error (or none).
  template <class... Ts>
  std::optional<error> ask(Ts&&... xs) {
    std::optional<error> out;
    auto h = self_->request(sup_, caf::infinite, std::forward<Ts>(xs)...);
    sched_.run();
    h.receive([](bool) {}, [&](caf::error& e) { out = to_error(e); });
    return out;
  }

  bool has_event(supervision_event::kind_t k, const std::string& child = "") {
    for (auto& e : w_.events)
      if (e.kind == k && e.child == child)
        return true;
    return false;
  }

  /// Whether the supervisor still answers.
  bool sup_alive() {
    bool alive = false;
    auto h = self_->request(sup_, caf::infinite, count_children_atom::value);
    sched_.run();
    h.receive([&](child_counts&) { alive = true; }, [&](caf::error&) { alive = false; });
    return alive;
  }
};

supervisor_spec three(restart_strategy s, int intensity = 10) {
  supervisor_spec spec;
  spec.name = "sup";
  spec.strategy = s;
  spec.intensity = intensity;
  spec.period = 5s;
  spec.backoff.jitter = 0;
  spec.children = {worker("a"), worker("b"), worker("c")};
  return spec;
}

} // namespace

TEST_F(supervisor_test, children_start_in_order) {
  start(three(restart_strategy::one_for_one));
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start a", "start b", "start c"}));
  EXPECT_TRUE(has_event(supervision_event::started));
  auto info = which();
  ASSERT_EQ(info.size(), 3u);
  for (auto& i : info)
    EXPECT_EQ(i.state, child_info::running) << i.id;
}

TEST_F(supervisor_test, one_for_one_restarts_only_the_child_that_ended) {
  start(three(restart_strategy::one_for_one));
  take_log();
  end("b");
  EXPECT_EQ(take_log(), (std::vector<std::string>{"end b", "start b"}));
  EXPECT_EQ(w_.starts["a"], 1);
  EXPECT_EQ(w_.starts["b"], 2);
  EXPECT_EQ(w_.starts["c"], 1);
  EXPECT_EQ(which()[1].restarts, 1u);
}

TEST_F(supervisor_test, one_for_all_stops_the_others_in_reverse_then_starts_all_in_order) {
  start(three(restart_strategy::one_for_all));
  take_log();
  end("b");
  EXPECT_EQ(take_log(), (std::vector<std::string>{"end b", "stop c", "stop a", "start a",
                                                  "start b", "start c"}));
}

TEST_F(supervisor_test, rest_for_one_restarts_the_child_and_those_after_it) {
  start(three(restart_strategy::rest_for_one));
  take_log();
  end("b");
  EXPECT_EQ(take_log(), (std::vector<std::string>{"end b", "stop c", "start b", "start c"}));
  EXPECT_EQ(w_.starts["a"], 1);
}

TEST_F(supervisor_test, restart_types_by_exit_kind) {
  struct row {
    restart_type type;
    exit_kind kind;
    bool restarted;
  };
  const row matrix[] = {
    {restart_type::permanent, exit_kind::normal, true},
    {restart_type::permanent, exit_kind::shutdown, true},
    {restart_type::permanent, exit_kind::crash, true},
    {restart_type::transient, exit_kind::normal, false},
    {restart_type::transient, exit_kind::shutdown, false},
    {restart_type::transient, exit_kind::crash, true},
    {restart_type::temporary, exit_kind::normal, false},
    {restart_type::temporary, exit_kind::shutdown, false},
    {restart_type::temporary, exit_kind::crash, false},
  };
  for (auto& r : matrix) {
    SCOPED_TRACE(testing::Message() << "restart type " << static_cast<int>(r.type) << ", exit "
                                    << r.kind);
    w_ = world{};
    supervisor_spec spec;
    spec.intensity = 10;
    spec.children = {worker("x", r.type), worker("bystander")};
    start(spec);
    end("x", r.kind);
    EXPECT_EQ(w_.starts["x"], r.restarted ? 2 : 1);
    EXPECT_EQ(w_.starts["bystander"], 1);
    auto info = which();
    if (r.type == restart_type::temporary) {
      ASSERT_EQ(info.size(), 1u) << "a temporary child's spec is forgotten";
      EXPECT_EQ(info[0].id, "bystander");
    } else {
      ASSERT_EQ(info.size(), 2u);
      EXPECT_EQ(info[0].state, r.restarted ? child_info::running : child_info::stopped);
      ASSERT_TRUE(info[0].last_exit);
      EXPECT_EQ(info[0].last_exit->kind, r.kind);
    }
    anon_send_exit(sup_, caf::exit_reason::kill);
    for (auto& [id, a] : w_.actors)
      anon_send_exit(a, caf::exit_reason::kill);
    sched_.run();
    sup_ = nullptr;
  }
}

TEST_F(supervisor_test, intensity_exceeded_stops_children_in_reverse_and_the_supervisor) {
  auto spec = three(restart_strategy::one_for_one, 1);
  start(spec);
  take_log();
  end("a");  // 1 restart within 5 s: allowed
  sched_.advance_time(1s);
  sched_.run();
  end("a");  // the second within 5 s: more than intensity 1
  auto log = take_log();
  EXPECT_EQ(log, (std::vector<std::string>{"end a", "start a", "end a", "stop c", "stop b"}));
  EXPECT_TRUE(has_event(supervision_event::gave_up));
  EXPECT_TRUE(has_event(supervision_event::stopped));
  EXPECT_FALSE(sup_alive());
}

TEST_F(supervisor_test, restarts_spread_beyond_the_period_survive) {
  auto spec = three(restart_strategy::one_for_one, 1);
  spec.backoff.reset_after = 1s;
  start(spec);
  for (int i = 0; i < 5; ++i) {
    end("b");
    sched_.advance_time(6s);
    sched_.run();
  }
  EXPECT_EQ(w_.starts["b"], 6);
  EXPECT_FALSE(has_event(supervision_event::gave_up));
  EXPECT_TRUE(sup_alive());
}

TEST_F(supervisor_test, a_nested_supervisor_that_gives_up_escalates_to_its_parent) {
  auto inner = std::make_shared<supervisor_spec>();
  inner->name = "inner";
  inner->intensity = 0;  // gives up at its first restart
  inner->children = {worker("x")};
  supervisor_spec outer;
  outer.name = "outer";
  outer.intensity = 1;
  outer.period = 5s;
  child_spec nested;
  nested.id = "inner";
  nested.supervisor = inner;
  outer.children = {nested, worker("y")};
  start(outer);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start x", "start y"}));
  end("x");  // inner gives up; outer restarts it (permanent), which starts x again
  EXPECT_EQ(take_log(), (std::vector<std::string>{"end x", "start x"}));
  EXPECT_TRUE(sup_alive());
  end("x");  // inner gives up again within 5 s: outer's intensity 1 is exceeded too
  EXPECT_EQ(take_log(), (std::vector<std::string>{"end x", "stop y"}));
  EXPECT_FALSE(sup_alive());
  int gave_up = 0;
  for (auto& e : w_.events)
    gave_up += e.kind == supervision_event::gave_up;
  EXPECT_EQ(gave_up, 3);  // inner twice, outer once
}

TEST_F(supervisor_test, backoff_doubles_from_base_up_to_the_cap) {
  supervisor_spec spec;
  spec.intensity = 1000;
  spec.period = 1s;
  spec.backoff = {100ms, 1s, 0.0, 60s};
  spec.children = {worker("f")};
  w_.fail_start["f"] = true;
  start(spec);
  std::vector<std::int64_t> delays;
  for (int i = 0; i < 7; ++i) {
    for (auto& e : w_.events)
      if (e.kind == supervision_event::restarting)
        delays.push_back(e.delay.count());
    w_.events.clear();
    sched_.advance_time(1s);
    sched_.run();
  }
  ASSERT_GE(delays.size(), 7u);
  EXPECT_EQ(std::vector<std::int64_t>(delays.begin(), delays.begin() + 7),
            (std::vector<std::int64_t>{0, 100, 200, 400, 800, 1000, 1000}));
}

TEST_F(supervisor_test, backoff_waits_on_the_actor_clock) {
  supervisor_spec spec;
  spec.intensity = 1000;
  spec.backoff = {100ms, 30s, 0.0, 60s};
  spec.children = {worker("f")};
  w_.fail_start["f"] = true;
  start(spec);
  EXPECT_EQ(w_.starts["f"], 2);  // the first restart is immediate
  sched_.advance_time(99ms);
  sched_.run();
  EXPECT_EQ(w_.starts["f"], 2);
  sched_.advance_time(1ms);
  sched_.run();
  EXPECT_EQ(w_.starts["f"], 3);  // after 100 ms
  sched_.advance_time(200ms);
  sched_.run();
  EXPECT_EQ(w_.starts["f"], 4);  // after 200 more
}

TEST_F(supervisor_test, jitter_stays_within_its_bounds) {
  supervision::restart_backoff b{{100ms, 30s, 0.2, 60s}};
  EXPECT_EQ(b.next(0.5).count(), 0);
  for (double u : {0.0, 0.25, 0.5, 0.75, 0.9999}) {
    supervision::restart_backoff c{{100ms, 30s, 0.2, 60s}};
    c.next(u);
    auto d = c.next(u).count();
    EXPECT_GE(d, 80);
    EXPECT_LE(d, 120);
  }
  supervision::restart_backoff capped{{100ms, 1s, 0.2, 60s}};
  for (int i = 0; i < 20; ++i)
    EXPECT_LE(capped.next(0.9999).count(), 1000);
}

TEST_F(supervisor_test, backoff_resets_after_the_child_stayed_up) {
  supervisor_spec spec;
  spec.intensity = 1000;
  spec.backoff = {100ms, 30s, 0.0, 60s};
  spec.children = {worker("c")};
  start(spec);
  auto last_delay = [&] {
    std::int64_t d = -1;
    for (auto& e : w_.events)
      if (e.kind == supervision_event::restarting)
        d = e.delay.count();
    return d;
  };
  end("c");
  EXPECT_EQ(last_delay(), 0);
  sched_.advance_time(59s);
  sched_.run();
  end("c");  // up 59 s: not long enough, the sequence goes on
  EXPECT_EQ(last_delay(), 100);
  sched_.advance_time(100ms);
  sched_.run();
  sched_.advance_time(61s);
  sched_.run();
  end("c");  // up 61 s: starts over
  EXPECT_EQ(last_delay(), 0);
}

TEST_F(supervisor_test, stop_stops_children_in_reverse_start_order) {
  start(three(restart_strategy::one_for_one));
  take_log();
  auto e = ask(stop_atom::value);
  EXPECT_FALSE(e);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"stop c", "stop b", "stop a"}));
  EXPECT_FALSE(sup_alive());
}

TEST_F(supervisor_test, in_backoff_it_answers_and_stops_at_once) {
  supervisor_spec spec;
  spec.intensity = 1000;
  spec.backoff = {30s, 30s, 0.0, 60s};
  spec.children = {worker("ok"), worker("f")};
  w_.fail_start["f"] = true;
  start(spec);
  // f failed twice: the immediate restart, then a 30 s wait.
  EXPECT_EQ(w_.starts["f"], 2);
  auto info = which();
  ASSERT_EQ(info.size(), 2u);
  EXPECT_EQ(info[1].state, child_info::restarting);
  ASSERT_TRUE(info[1].last_exit);
  EXPECT_EQ(info[1].last_exit->kind, exit_kind::start_failed);
  EXPECT_EQ(info[1].last_exit->reason.message, "f: init raised");
  take_log();
  auto e = ask(stop_atom::value);  // no time passes
  EXPECT_FALSE(e);
  EXPECT_EQ(take_log(), (std::vector<std::string>{"stop ok"}));
  EXPECT_FALSE(sup_alive());
}

TEST_F(supervisor_test, dynamic_children) {
  supervisor_spec spec;
  spec.intensity = 10;
  spec.children = {worker("a")};
  start(spec);
  take_log();
  EXPECT_FALSE(ask(start_child_atom::value, worker("d")));
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start d"}));
  auto dup = ask(start_child_atom::value, worker("d"));
  ASSERT_TRUE(dup);
  EXPECT_EQ(dup->code, errc::invalid_argument);
  auto running = ask(delete_child_atom::value, std::string{"d"});
  ASSERT_TRUE(running) << "a running child cannot be deleted";
  EXPECT_FALSE(ask(terminate_child_atom::value, std::string{"d"}));
  EXPECT_EQ(take_log(), (std::vector<std::string>{"stop d"}));
  EXPECT_EQ(which()[1].state, child_info::stopped);
  EXPECT_FALSE(ask(restart_child_atom::value, std::string{"d"}));
  EXPECT_EQ(take_log(), (std::vector<std::string>{"start d"}));
  EXPECT_TRUE(ask(restart_child_atom::value, std::string{"d"})) << "it is running";
  EXPECT_FALSE(ask(terminate_child_atom::value, std::string{"d"}));
  EXPECT_FALSE(ask(delete_child_atom::value, std::string{"d"}));
  auto counts_h = self_->request(sup_, caf::infinite, count_children_atom::value);
  sched_.run();
  counts_h.receive([](child_counts& n) {
    EXPECT_EQ(n.specs, 1u);
    EXPECT_EQ(n.active, 1u);
    EXPECT_EQ(n.workers, 1u);
  }, [](caf::error&) { ADD_FAILURE(); });
  auto unknown = ask(terminate_child_atom::value, std::string{"nope"});
  ASSERT_TRUE(unknown);
  EXPECT_EQ(unknown->code, errc::invalid_argument);
}

TEST(restart_window, counts_restarts_in_a_sliding_period) {
  using tp = std::chrono::time_point<std::chrono::steady_clock, std::chrono::milliseconds>;
  supervision::restart_window w{2, 5s};
  EXPECT_TRUE(w.add(tp{0ms}));
  EXPECT_TRUE(w.add(tp{1000ms}));
  EXPECT_FALSE(w.add(tp{4999ms}));  // 3 within 5 s
  supervision::restart_window v{2, 5s};
  EXPECT_TRUE(v.add(tp{0ms}));
  EXPECT_TRUE(v.add(tp{1000ms}));
  EXPECT_TRUE(v.add(tp{5000ms}));  // the first one is exactly a period old: out
}
