// The asyncio bridge: pipelined requests, out-of-order replies, Python -> host calls (issue 4).
#include <atomic>
#include <future>

#include <caf/all.hpp>

#include "pyvisor/actor_interface.hpp"
#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {
class bridge_test : public runtime_test {};
} // namespace

TEST_F(bridge_test, async_requests_run_concurrently_sync_ones_do_not) {
  auto o = options();
  o.init_script = {"import asyncio\nev = asyncio.Event()"};
  auto py = must_spawn(o);
  // The first eval can only finish if the second runs while it waits: true concurrency.
  std::promise<expected<value>> first;
  py.eval_async("await ev.wait()\nreturn 'released'", {}, {},
                [&](expected<value> r) { first.set_value(std::move(r)); });
  auto second = py.eval("ev.set()\nreturn 'setter'");
  ASSERT_TRUE(second) << second.error().to_string();
  auto f = first.get_future();
  ASSERT_EQ(f.wait_for(scaled(10s)), std::future_status::ready);
  auto r = f.get();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::string>(), "released");
  // Two async sleeps of 0.2 s overlap; two sync sleeps cannot (documented).
  auto t0 = std::chrono::steady_clock::now();
  std::promise<void> a, b;
  py.eval_async("await asyncio.sleep(0.2)", {}, {}, [&](expected<value>) { a.set_value(); });
  py.eval_async("await asyncio.sleep(0.2)", {}, {}, [&](expected<value>) { b.set_value(); });
  a.get_future().wait();
  b.get_future().wait();
  auto async_took = std::chrono::steady_clock::now() - t0;
  t0 = std::chrono::steady_clock::now();
  std::promise<void> c, d;
  py.eval_async("import time\ntime.sleep(0.2)", {}, {}, [&](expected<value>) { c.set_value(); });
  py.eval_async("import time\ntime.sleep(0.2)", {}, {}, [&](expected<value>) { d.set_value(); });
  c.get_future().wait();
  d.get_future().wait();
  auto sync_took = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(sync_took, 400ms);
  EXPECT_LT(async_took, sync_took);
}

TEST_F(bridge_test, replies_complete_out_of_order) {
  auto py = must_spawn(options());
  std::mutex mu;
  std::vector<std::string> order;
  std::promise<void> both;
  std::atomic<int> n{0};
  auto record = [&](expected<value> r) {
    bool last;
    {
      std::lock_guard<std::mutex> g{mu};
      order.push_back(r ? r->as<std::string>() : r.error().to_string());
      last = ++n == 2;
    }
    // Last, and outside the lock: once it is set the test's locals (the mutex too) may be gone.
    if (last)
      both.set_value();
  };
  py.eval_async("import asyncio\nawait asyncio.sleep(0.3)\nreturn 'slow'", {}, {}, record);
  py.eval_async("return 'fast'", {}, {}, record);
  ASSERT_EQ(both.get_future().wait_for(scaled(10s)), std::future_status::ready);
  EXPECT_EQ(order, (std::vector<std::string>{"fast", "slow"}));
}

TEST_F(bridge_test, python_calls_exposed_host_functions) {
  rt_->expose("add", [](int a, int b) { return a + b; });
  std::atomic<int> counter{0};
  rt_->expose("next", [&counter]() { return ++counter; });
  rt_->expose("fail", [](const std::string& why) -> expected<int> {
    return make_error(errc::invalid_argument, why);
  });
  rt_->expose("throws", []() -> int { throw std::runtime_error("boom from C++"); });
  auto py = must_spawn(options());
  auto r = py.eval("return await pyvisor.call('add', 2, 3)");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<int>(), 5);
  auto g = py.eval("import asyncio\nreturn sorted(await asyncio.gather(*(pyvisor.call('next') for _ in range(3))))");
  ASSERT_TRUE(g) << g.error().to_string();
  EXPECT_EQ(g->as<std::vector<int>>(), (std::vector<int>{1, 2, 3}));
  auto missing = py.eval("try:\n    await pyvisor.call('nope')\nexcept pyvisor.HostError as e:\n    return str(e)");
  ASSERT_TRUE(missing) << missing.error().to_string();
  EXPECT_NE(missing->as<std::string>().find("not exposed"), std::string::npos) << missing->as<std::string>();
  auto failed = py.eval("try:\n    await pyvisor.call('fail', 'bad input')\nexcept pyvisor.HostError as e:\n    return str(e)");
  ASSERT_TRUE(failed) << failed.error().to_string();
  EXPECT_NE(failed->as<std::string>().find("fail"), std::string::npos);
  EXPECT_NE(failed->as<std::string>().find("bad input"), std::string::npos);
  auto uncaught = py.eval("await pyvisor.call('throws')");
  ASSERT_FALSE(uncaught);
  EXPECT_EQ(uncaught.error().code, errc::python_exception);
  EXPECT_NE(uncaught.error().python_type.find("HostError"), std::string::npos) << uncaught.error().python_type;
  EXPECT_NE(uncaught.error().message.find("boom from C++"), std::string::npos) << uncaught.error().message;
  EXPECT_NE(uncaught.error().message.find("throws"), std::string::npos) << uncaught.error().message;
  // Wrong argument count is a clear error, not a crash.
  auto arity = py.eval("await pyvisor.call('add', 1)");
  ASSERT_FALSE(arity);
  EXPECT_NE(arity.error().message.find("takes 2"), std::string::npos) << arity.error().message;
  // From a Python thread.
  auto th = py.eval("import asyncio, threading\nout = []\n"
                    "t = threading.Thread(target=lambda: out.append(pyvisor.call_threadsafe('add', 20, 22)))\n"
                    "t.start()\nwhile t.is_alive():\n    await asyncio.sleep(0.01)\nreturn out[0]",
                    {}, {});
  ASSERT_TRUE(th) << th.error().to_string();
  EXPECT_EQ(th->as<int>(), 42);
}

TEST_F(bridge_test, casts_and_sends_reach_the_host) {
  std::atomic<int> casts{0};
  rt_->expose("tick", [&casts](int n) { casts += n; });
  caf::scoped_actor inbox{rt_->system()};
  rt_->expose_actor("inbox", inbox);
  auto handle = rt_->handle_for(inbox);
  auto py = must_spawn(options());
  ASSERT_TRUE(py.eval("for i in range(10):\n    await pyvisor.cast('tick', 1)"));
  EXPECT_TRUE(eventually([&] { return casts.load() == 10; }));
  ASSERT_TRUE(py.eval("await pyvisor.send('inbox', {'hello': 1})"));
  ASSERT_TRUE(py.eval("await pyvisor.send(h, [1, 2])", {{"h", handle}}));
  int got = 0;
  for (int i = 0; i < 2; ++i)
    inbox->receive([&](python_message_atom, const value& v) { got += v.is_nil() ? 0 : 1; },
                   caf::after(std::chrono::seconds(10)) >> [] { ADD_FAILURE() << "no message"; });
  EXPECT_EQ(got, 2);
  rt_->unexpose("inbox");
}

TEST_F(bridge_test, host_call_timeout_and_background_tasks) {
  // An exposed actor that never answers: the Python side times out.
  auto silent = rt_->system().spawn([](caf::event_based_actor* self) -> caf::behavior {
    return {[self](host_call_atom, const std::string&, const std::vector<value>&) {
      return self->make_response_promise();  // never delivered
    }};
  });
  rt_->expose_actor("silent", silent);
  std::atomic<int> bg{0};
  rt_->expose("bg_done", [&bg](int v) { bg = v; });
  auto py = must_spawn(options());
  auto r = py.eval("import asyncio\ntry:\n    await pyvisor.call('silent', timeout=0.1)\n"
                   "except asyncio.TimeoutError:\n    return 'timed out'");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::string>(), "timed out");
  // A task that outlives its eval keeps running and talks to the host.
  ASSERT_TRUE(py.eval("import asyncio\nasync def later():\n    await asyncio.sleep(0.05)\n"
                      "    await pyvisor.call('bg_done', 7)\n"
                      "pyvisor.__dict__.setdefault('_keep', []).append(asyncio.ensure_future(later()))"));
  EXPECT_TRUE(eventually([&] { return bg.load() == 7; }));
  rt_->unexpose("silent");
  caf::anon_send_exit(silent, caf::exit_reason::user_shutdown);
}

TEST_F(bridge_test, an_interpreter_dying_during_a_host_call_leaves_nothing_behind) {
  // A slow host function: the process dies while it runs; its late answer goes nowhere.
  std::atomic<int> calls{0};
  rt_->expose("slow", [&calls]() {
    ++calls;
    std::this_thread::sleep_for(std::chrono::milliseconds(300));  // the slow host work itself
    return 1;
  });
  auto py = must_spawn(options());
  auto r = py.eval("import asyncio, os\nasync def die():\n    await asyncio.sleep(0.05)\n    os._exit(9)\n"
                   "asyncio.ensure_future(die())\nreturn await pyvisor.call('slow')");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited);
  EXPECT_TRUE(eventually([&] { return py.state() == interpreter_state::stopped; }));
  EXPECT_EQ(calls.load(), 1);
}
