// Environments and calls by name (issue 3), against a real Python process.
#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

class env_test : public runtime_test {
protected:
  void SetUp() override {
    runtime_test::SetUp();
    auto o = options();
    o.init_script = {"import math\nshared = []\nbase = 'root'"};
    py_.emplace(must_spawn(o));
  }
  void TearDown() override {
    py_.reset();
    runtime_test::TearDown();
  }
  env must_env(const env_options& o = {}) {
    auto e = py_->make_env(o);
    if (!e)
      throw std::runtime_error("make_env: " + e.error().to_string());
    return *e;
  }
  std::optional<interpreter> py_;
};

std::vector<int> ints(const expected<value>& v) {
  if (!v) {
    ADD_FAILURE() << v.error().to_string();
    return {};
  }
  return v->as<std::vector<int>>();
}

} // namespace

TEST_F(env_test, new_env_sees_root_and_its_vars) {
  auto e = must_env({.vars = {{"z", 2}}});
  auto r = e.eval("return [len(base), z]");
  EXPECT_EQ(ints(r), (std::vector<int>{4, 2}));
}

TEST_F(env_test, envs_mutate_and_keep_state) {
  auto e = must_env();
  ASSERT_TRUE(e.eval("x = 10"));
  ASSERT_TRUE(e.eval("y = x * z", {{"z", 2}}));
  auto r = e.eval("return [x, y, z]");
  EXPECT_EQ(ints(r), (std::vector<int>{10, 20, 2}));
  // A plain eval still starts from root.
  auto root = py_->eval("return 'x' in globals()");
  ASSERT_TRUE(root);
  EXPECT_FALSE(root->as<bool>());
}

TEST_F(env_test, from_sources_in_order_then_vars) {
  auto a = must_env({.vars = {{"x", 1}, {"y", 1}}});
  auto c = must_env({.vars = {{"x", 2}}});
  auto d = must_env({.from = {{a}, {c}}});
  EXPECT_EQ(ints(d.eval("return [x, y]")), (std::vector<int>{2, 1}));
  auto v = must_env({.vars = {{"x", 9}}, .from = {{a}, {c}}});
  EXPECT_EQ(ints(v.eval("return [x, y]")), (std::vector<int>{9, 1}));
}

TEST_F(env_test, only_and_except) {
  auto a = must_env({.vars = {{"x", 1}, {"y", 2}, {"w", 3}}});
  auto only = must_env({.from = {{a, std::vector<std::string>{"x"}, std::nullopt}}});
  auto r = only.eval("return ['x' in globals(), 'y' in globals(), 'w' in globals()]");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::vector<bool>>(), (std::vector<bool>{true, false, false}));
  auto except = must_env({.from = {{a, std::nullopt, std::vector<std::string>{"x"}}}});
  auto r2 = except.eval("return ['x' in globals(), 'y' in globals(), 'w' in globals()]");
  ASSERT_TRUE(r2) << r2.error().to_string();
  EXPECT_EQ(r2->as<std::vector<bool>>(), (std::vector<bool>{false, true, true}));
}

TEST_F(env_test, argument_errors) {
  auto a = must_env({.vars = {{"x", 1}}});
  auto both = py_->make_env({.from = {{a, std::vector<std::string>{"x"}, std::vector<std::string>{"y"}}}});
  ASSERT_FALSE(both);
  EXPECT_EQ(both.error().code, errc::invalid_argument);
  auto missing = py_->make_env({.from = {{a, std::vector<std::string>{"nope"}, std::nullopt}}});
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::env_key_not_found);
  EXPECT_NE(missing.error().message.find("nope"), std::string::npos) << missing.error().message;
  auto other = must_spawn(options());
  auto foreign = other.make_env({.from = {{a}}});
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code, errc::invalid_argument);
}

TEST_F(env_test, envs_are_isolated_but_shallow) {
  auto a = must_env();
  auto b = must_env();
  ASSERT_TRUE(a.eval("base = 'changed in a'\nshared.append(1)"));
  auto rb = b.eval("return [base, len(shared)]");
  ASSERT_TRUE(rb) << rb.error().to_string();
  auto vb = rb->as<std::tuple<std::string, int>>();
  EXPECT_EQ(std::get<0>(vb), "root");  // rebinding does not leak
  EXPECT_EQ(std::get<1>(vb), 1);       // the init script's list is shared (shallow copy)
}

TEST_F(env_test, destroy_is_idempotent_and_then_env_not_found) {
  auto e = must_env({.vars = {{"x", 1}}});
  auto copy = e;
  e.destroy();
  e.destroy();
  copy.destroy();
  auto r = copy.eval("return x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::env_not_found);
}

TEST_F(env_test, dropping_the_last_handle_frees_the_namespace) {
  // A weak reference to an object that only the env's namespace holds.
  ASSERT_TRUE(py_->eval("import weakref"));
  auto probe = must_env();
  {
    auto e = must_env();
    ASSERT_TRUE(e.eval("class Marker: pass\nm = Marker()\nimport weakref\n"
                       "pyvisor.__dict__.setdefault('_test_refs', []).append(weakref.ref(m))"));
    auto alive = probe.eval("return pyvisor._test_refs[-1]() is not None");
    ASSERT_TRUE(alive) << alive.error().to_string();
    EXPECT_TRUE(alive->as<bool>());
  }
  // The drop notification is ordered before this request: the namespace is gone.
  auto gone = probe.eval("import gc\ngc.collect()\nreturn pyvisor._test_refs[-1]() is None");
  ASSERT_TRUE(gone) << gone.error().to_string();
  EXPECT_TRUE(gone->as<bool>());
}

TEST_F(env_test, env_is_lost_when_its_interpreter_stops) {
  auto e = must_env({.vars = {{"x", 1}}});
  EXPECT_TRUE(py_->stop());
  auto r = e.eval("return x");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::env_lost);
}

TEST_F(env_test, call_by_dotted_name) {
  auto r = py_->call("math.hypot", {3, 4});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_DOUBLE_EQ(r->as<double>(), 5.0);
  auto j = py_->call("json.dumps", {std::vector<int>{1, 2}}, {{"separators", std::vector<std::string>{",", ":"}}});
  ASSERT_TRUE(j) << j.error().to_string();
  EXPECT_EQ(j->as<std::string>(), "[1,2]");
  auto e = must_env();
  ASSERT_TRUE(e.eval("import asyncio\nasync def twice(n):\n    await asyncio.sleep(0)\n    return 2 * n\n"
                     "def add(a, b=10):\n    return a + b"));
  EXPECT_EQ(e.call("twice", {21})->as<int>(), 42);
  EXPECT_EQ(e.call("add", {1}, {{"b", 2}})->as<int>(), 3);
  auto missing = py_->call("math.nope");
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, errc::python_exception);
  EXPECT_EQ(missing.error().python_type, "AttributeError");
  auto nomod = py_->call("no_such_module_xyz.f");
  ASSERT_FALSE(nomod);
  EXPECT_EQ(nomod.error().python_type, "ModuleNotFoundError");
}

TEST_F(env_test, cpu_bound_code_in_one_env_does_not_corrupt_another) {
  auto a = must_env({.vars = {{"n", 0}}});
  auto b = must_env({.vars = {{"n", 100}}});
  std::thread t([&] { (void) a.eval("for i in range(200000):\n    n += 1"); });
  for (int i = 0; i < 20; ++i)
    ASSERT_TRUE(b.eval("n += 1"));
  t.join();
  EXPECT_EQ(a.eval("return n")->as<int>(), 200000);
  EXPECT_EQ(b.eval("return n")->as<int>(), 120);
}
