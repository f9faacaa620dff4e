// One request path (issue 8 §1): every way of asking (blocking, eval_async, actor interface,
// make_env) goes through the request table, with the same deadlines, options and errors.
#include <atomic>
#include <future>

#include <caf/all.hpp>

#include "pyvisor/actor_interface.hpp"
#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {
class request_path_test : public runtime_test {};

expected<value> wait_async(interpreter& py, std::string code, eval_options o) {
  auto p = std::make_shared<std::promise<expected<value>>>();
  auto f = p->get_future();
  py.eval_async(code, {}, o, [p](expected<value> r) { p->set_value(std::move(r)); });
  if (f.wait_for(scaled(30s)) != std::future_status::ready)
    return make_error(errc::none, "no answer");
  return f.get();
}
} // namespace

TEST_F(request_path_test, eval_async_applies_its_timeout_and_the_default) {
  auto o = options();
  o.default_timeout = 300ms;
  auto py = must_spawn(o);
  auto r = wait_async(py, "import asyncio\nawait asyncio.sleep(60)", {.timeout = 200ms});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout) << r.error();
  EXPECT_NE(r.error().message.find("200 ms"), std::string::npos) << r.error();
  auto d = wait_async(py, "import asyncio\nawait asyncio.sleep(60)", {});
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, errc::timeout);
  EXPECT_NE(d.error().message.find("300 ms"), std::string::npos) << d.error();
  // The cancelled requests freed the interpreter: it still serves.
  auto ok = py.eval("return 5", {}, {.timeout = scaled(10s)});
  ASSERT_TRUE(ok) << ok.error();
  EXPECT_EQ(ok->as<int>(), 5);
}

TEST_F(request_path_test, eval_async_fills_capture_before_done) {
  auto py = must_spawn(options());
  captured_output out;
  auto r = wait_async(py, "print('to out')\nimport sys\nprint('to err', file=sys.stderr)\nreturn 1",
                      {.capture = &out});
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(out.out, "to out\n");
  EXPECT_EQ(out.err, "to err\n");
}

TEST_F(request_path_test, timeouts_follow_one_convention) {
  auto py = must_spawn(options());
  for (auto bad : {0ms, -5ms}) {
    auto r = py.eval("return 1", {}, {.timeout = bad});
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().code, errc::invalid_argument) << r.error();
    auto a = wait_async(py, "return 1", {.timeout = bad});
    ASSERT_FALSE(a);
    EXPECT_EQ(a.error().code, errc::invalid_argument);
    auto e = py.make_env({.timeout = bad});
    ASSERT_FALSE(e);
    EXPECT_EQ(e.error().code, errc::invalid_argument);
  }
  auto f = py.eval("return 2", {}, {.timeout = forever});
  ASSERT_TRUE(f) << f.error();
  auto o = options();
  o.default_timeout = 0ms;
  auto zero = spawn(o);
  ASSERT_FALSE(zero);
  EXPECT_EQ(zero.error().code, errc::config_error);
  o.default_timeout = forever;
  o.init_script_timeout = 0ms;
  auto init_zero = spawn(o);
  ASSERT_FALSE(init_zero);
  EXPECT_EQ(init_zero.error().code, errc::config_error);
  // wait_ready(0ms) checks without waiting.
  EXPECT_TRUE(py.wait_ready(0ms));
}

TEST_F(request_path_test, make_env_honours_its_deadline) {
  auto o = options();
  o.init_script = {"import time"};
  auto py = must_spawn(o);
  // A sync request that blocks the runner holds the make_env behind it past its deadline.
  auto blocker = std::async(std::launch::async, [&] {
    return py.eval("time.sleep(1.5)\nreturn 'slept'", {}, {.timeout = scaled(30s)});
  });
  ASSERT_TRUE(eventually([&] { return py.stats().in_flight == 1; }));
  auto e = py.make_env({.timeout = 200ms});
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, errc::timeout) << e.error();
  auto b = blocker.get();
  ASSERT_TRUE(b) << b.error();
  auto later = py.make_env({.vars = {{"x", 1}}});
  ASSERT_TRUE(later) << later.error();
  EXPECT_EQ(later->eval("return x")->as<int>(), 1);
}

TEST_F(request_path_test, actor_interface_uses_the_same_deadlines_and_checks) {
  auto py = must_spawn(options());
  caf::scoped_actor self{rt_->system()};
  eval_request slow{"import asyncio\nawait asyncio.sleep(60)", {}, {}, 0};
  slow.options.timeout = 200ms;
  std::optional<error> got;
  self->request(py.actor(), scaled(30s), eval_atom::value, slow)
    .receive([&](const value&) { got = make_error(errc::none, "a value"); },
             [&](const caf::error& e) { got = to_error(e); });
  ASSERT_TRUE(got);
  EXPECT_EQ(got->code, errc::timeout) << *got;
  captured_output out;
  eval_request with_capture{"return 1", {}, {}, 0};
  with_capture.options.capture = &out;
  got.reset();
  self->request(py.actor(), scaled(30s), eval_atom::value, with_capture)
    .receive([&](const value&) { got = make_error(errc::none, "a value"); },
             [&](const caf::error& e) { got = to_error(e); });
  ASSERT_TRUE(got);
  EXPECT_EQ(got->code, errc::invalid_argument) << *got;
  make_env_request me;
  me.timeout = -1ms;
  got.reset();
  self->request(py.actor(), scaled(30s), make_env_atom::value, me)
    .receive([&](std::uint64_t) { got = make_error(errc::none, "an env"); },
             [&](const caf::error& e) { got = to_error(e); });
  ASSERT_TRUE(got);
  EXPECT_EQ(got->code, errc::invalid_argument) << *got;
}

TEST_F(request_path_test, sends_name_their_interpreter_as_sender) {
  caf::scoped_actor inbox{rt_->system()};
  rt_->expose_actor("inbox", caf::actor{inbox});
  auto a = must_spawn(options());
  auto b = must_spawn(options());
  ASSERT_TRUE(a.eval("await pyvisor.send('inbox', 'from a')"));
  ASSERT_TRUE(b.eval("await pyvisor.send('inbox', 'from b')"));
  std::map<std::string, caf::actor_addr> senders;
  for (int i = 0; i < 2; ++i)
    inbox->receive(
      [&](python_message_atom, const value& v) {
        senders[v.as<std::string>()] = caf::actor_cast<caf::actor_addr>(inbox->current_sender());
      },
      caf::after(scaled(10s)) >> [] { ADD_FAILURE() << "no message"; });
  EXPECT_EQ(senders["from a"], a.actor().address());
  EXPECT_EQ(senders["from b"], b.actor().address());
  rt_->unexpose("inbox");
}

TEST_F(request_path_test, a_slow_host_function_does_not_delay_the_stop_or_deadlines) {
  std::promise<void> entered;
  std::promise<void> release;
  auto release_f = release.get_future().share();
  std::atomic<bool> once{false};
  rt_->expose("slow", [&, release_f](int) {
    if (!once.exchange(true))
      entered.set_value();
    release_f.wait_for(scaled(20s));
    return 1;
  });
  auto py = must_spawn(options());
  std::promise<expected<value>> stuck;
  py.eval_async("await pyvisor.call('slow', 1)\nreturn 1", {}, {.timeout = forever},
                [&](expected<value> r) { stuck.set_value(std::move(r)); });
  ASSERT_EQ(entered.get_future().wait_for(scaled(10s)), std::future_status::ready);
  // The host function blocks its host actor; the interpreter actor still runs deadlines and
  // the stop sequence.
  auto t = py.eval("import asyncio\nawait asyncio.sleep(60)", {}, {.timeout = 200ms});
  ASSERT_FALSE(t);
  EXPECT_EQ(t.error().code, errc::timeout);
  auto start = std::chrono::steady_clock::now();
  ASSERT_TRUE(py.stop());
  EXPECT_LT(std::chrono::steady_clock::now() - start, scaled(10s));
  auto r = stuck.get_future().get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_down) << r.error();
  release.set_value();
}

TEST_F(request_path_test, stop_takes_a_deadline) {
  auto py = must_spawn(options());  // default stop sequence: 5 s graceful, then 2 s
  std::promise<expected<value>> spinning;
  py.eval_async("import signal\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('spinning')\n"
                "while True:\n    pass",
                {}, {.timeout = forever},
                [&](expected<value> r) { spinning.set_value(std::move(r)); });
  ASSERT_TRUE(wait_log([](const captured_line& l) { return l.line == "spinning"; }));
  auto start = std::chrono::steady_clock::now();
  auto bad = py.stop(-1ms);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, errc::invalid_argument);
  ASSERT_TRUE(py.stop(300ms));
  EXPECT_LT(std::chrono::steady_clock::now() - start, scaled(4s))
    << "the 5 s graceful phase was not cut short";
  auto r = spinning.get_future().get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_down) << r.error();
  EXPECT_EQ(py.state(), interpreter_state::stopped);
}
