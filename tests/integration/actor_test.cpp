// The actor interface: the same operations as CAF messages, and exit reasons a supervisor can
// act on.
#include <future>

#include <caf/all.hpp>

#include "pyvisor/actor_interface.hpp"
#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {
class actor_test : public runtime_test {};
} // namespace

TEST_F(actor_test, eval_from_a_scoped_actor) {
  auto py = must_spawn(options());
  caf::scoped_actor self{rt_->system()};
  eval_request req{"return a + b", {{"a", 40}, {"b", 2}}, {}};
  int got = 0;
  self->request(py.actor(), caf::infinite, eval_atom::value, req)
    .receive([&](const value& v) { got = v.as<int>(); },
             [&](const caf::error& e) { ADD_FAILURE() << to_error(e).to_string(); });
  EXPECT_EQ(got, 42);

  eval_request bad{"raise KeyError('k')", {}, {}};
  error err;
  self->request(py.actor(), caf::infinite, eval_atom::value, bad)
    .receive([&](const value&) { ADD_FAILURE() << "expected an error"; },
             [&](const caf::error& e) { err = to_error(e); });
  EXPECT_EQ(err.code, errc::python_exception);
  EXPECT_EQ(err.python_type, "KeyError");
  EXPECT_FALSE(err.traceback.empty());

  int pid = 0;
  self->request(py.actor(), caf::infinite, os_pid_atom::value)
    .receive([&](int p) { pid = p; }, [&](const caf::error&) {});
  EXPECT_EQ(pid, py.os_pid());
}

TEST_F(actor_test, eval_from_an_event_based_actor_with_timeout) {
  auto py = must_spawn(options());
  std::promise<std::pair<int, errc>> done;
  auto fut = done.get_future();
  rt_->system().spawn([&done, target = py.actor()](caf::event_based_actor* self) {
    eval_request fast{"return 7", {}, {}};
    self->request(target, caf::infinite, eval_atom::value, fast)
      .then(
        [=, &done](const value& v) {
          int seven = v.as<int>();
          eval_request slow{"import asyncio\nawait asyncio.sleep(10)", {}, {.timeout = 100ms}};
          self->request(target, caf::infinite, eval_atom::value, slow)
            .then([=, &done](const value&) { done.set_value({seven, errc::none}); },
                  [=, &done](const caf::error& e) { done.set_value({seven, to_error(e).code}); });
        },
        [&done](const caf::error& e) { done.set_value({0, to_error(e).code}); });
  });
  ASSERT_EQ(fut.wait_for(scaled(10s)), std::future_status::ready);
  auto [seven, code] = fut.get();
  EXPECT_EQ(seven, 7);
  EXPECT_EQ(code, errc::timeout);
  EXPECT_EQ(py.eval("return 'after'")->as<std::string>(), "after");
}

TEST_F(actor_test, a_crash_is_the_exit_reason_of_the_actor) {
  auto py = must_spawn(options());
  caf::scoped_actor self{rt_->system()};
  self->monitor(py.actor());
  (void) py.eval("import os\nos._exit(5)");
  caf::error reason;
  self->receive([&](caf::down_msg& dm) { reason = dm.reason; },
                caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no down_msg"; });
  auto e = to_error(reason);
  EXPECT_EQ(e.code, errc::interpreter_exited) << rt_->system().render(reason);
  EXPECT_NE(e.message.find("code 5"), std::string::npos) << e.message;
}

TEST_F(actor_test, a_requested_stop_is_a_normal_exit) {
  auto py = must_spawn(options());
  caf::scoped_actor self{rt_->system()};
  self->monitor(py.actor());
  bool stopped = false;
  self->request(py.actor(), caf::infinite, stop_atom::value)
    .receive([&](bool b) { stopped = b; }, [&](const caf::error& e) { ADD_FAILURE() << to_error(e).to_string(); });
  EXPECT_TRUE(stopped);
  caf::error reason;
  self->receive([&](caf::down_msg& dm) { reason = dm.reason; },
                caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no down_msg"; });
  EXPECT_EQ(reason, caf::exit_reason::normal) << rt_->system().render(reason);
  EXPECT_EQ(py.state(), interpreter_state::stopped);
}

TEST_F(actor_test, an_exit_message_from_a_supervisor_stops_the_process) {
  auto py = must_spawn(options());
  int pid = py.os_pid();
  caf::scoped_actor self{rt_->system()};
  self->monitor(py.actor());
  self->send_exit(py.actor(), caf::exit_reason::user_shutdown);
  caf::error reason;
  self->receive([&](caf::down_msg& dm) { reason = dm.reason; },
                caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no down_msg"; });
  EXPECT_TRUE(eventually([&] { return process_gone(pid); }));
}

TEST_F(actor_test, an_unconditional_kill_of_the_actor_still_ends_the_process) {
  auto py = must_spawn(options());
  int pid = py.os_pid();
  caf::anon_send_exit(py.actor(), caf::exit_reason::kill);
  // stop() must not hang: the process is killed with its actor and the state published.
  EXPECT_TRUE(py.stop());
  EXPECT_EQ(py.state(), interpreter_state::stopped);
  EXPECT_TRUE(eventually([&] { return process_gone(pid); }));
  auto r = py.eval("return 1");
  ASSERT_FALSE(r);
}
