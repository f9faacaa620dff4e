// Deploying a runtime_spec (issue 10) against real Python processes: a config's tree of
// supervisors and pools, tenants' interpreters, environment policies, host-function
// allowlists, limits and memory budgets as seen from inside Python, durable envs made at start,
// a pool restarted by its supervisor without its callers noticing, and every way a deploy is
// refused (bad spec, missing venv, wrong Python version). Every test ends with the fixture's
// leak audit (no child, no fd left).

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include "pyvisor/config.hpp"
#include "pyvisor/deployment.hpp"
#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;
namespace fs = std::filesystem;

namespace {

class deployment_test : public runtime_test {
protected:
  /// Loads `toml` (relative paths against a fresh temp dir) and fails the test on a problem.
  runtime_spec load(const std::string& toml) {
    auto r = load_config_string(toml, "test.toml", dir());
    for (auto& p : r.problems)
      ADD_FAILURE() << p.to_string();
    if (!r.spec)
      throw std::runtime_error("the config did not load");
    return *r.spec;
  }

  deployment must_deploy(runtime_spec spec) {
    auto d = rt_->deploy(std::move(spec));
    if (!d)
      throw std::runtime_error("deploy failed: " + d.error().to_string());
    for (auto& p : d->spec().pools)
      if (auto pl = d->find_pool(p.options.name))
        for (auto& w : pl->stats().per_worker)
          track_pid(w.pid);
    return *d;
  }

  static std::string eval_text(pool& p, const std::string& code) {
    auto v = p.eval(code);
    if (!v)
      return "error: " + v.error().to_string();
    auto s = v->to<std::string>();
    return s ? *s : "<not a string>";
  }

  const std::string& dir() {
    if (dir_.empty()) {
      dir_ = (fs::temp_directory_path() / ("pyvisor-deploy-" + std::to_string(::getpid()) + "-" +
                                           ::testing::UnitTest::GetInstance()->current_test_info()->name()))
               .string();
      fs::create_directories(dir_);
    }
    return dir_;
  }

  void TearDown() override {
    runtime_test::TearDown();
    if (!dir_.empty())
      fs::remove_all(dir_);
  }

  std::string py() { return test_python(); }

private:
  std::string dir_;
};

} // namespace

TEST_F(deployment_test, a_config_tree_deploys_and_every_pool_answers_at_its_path) {
  auto spec = load(R"(
[tenants.alpha]
python = ")" + py() + R"("
[tenants.beta]
python = ")" + py() + R"("

[pools.front]
tenant = "alpha"
size = 2
init_script = "greeting = 'front'"

[pools.api]
tenant = "beta"
size = 1
init_script = "greeting = 'api'"

[supervisors.backend]
strategy = "one_for_all"
children = ["api"]
)");
  auto d = must_deploy(spec);
  auto front = d.find_pool("front");
  auto api = d.find_pool("api");
  ASSERT_TRUE(front && api);
  EXPECT_EQ(eval_text(*front, "return greeting"), "front");
  EXPECT_EQ(eval_text(*api, "return greeting"), "api");
  EXPECT_EQ(d.path_of("front").value(), "front");
  EXPECT_EQ(d.path_of("api").value(), "backend/api");
  auto kids = d.root().which_children();
  ASSERT_TRUE(kids);
  ASSERT_EQ(kids->size(), 2u);
  EXPECT_EQ((*kids)[0].id, "front");
  EXPECT_EQ((*kids)[1].id, "backend");
  EXPECT_TRUE((*kids)[0].is_supervisor) << "a pool counts as a supervisor child";
  EXPECT_FALSE(d.find_pool("nope").has_value());
  EXPECT_TRUE(d.stop().has_value());
}

TEST_F(deployment_test, a_tenant_sees_only_its_own_environment_and_the_names_it_inherits) {
  ::setenv("PYVISOR_T_HOST_SECRET", "host", 1);
  ::setenv("PYTHONPYVISORTEST", "leak", 1);
  ::setenv("LD_PYVISOR_TEST", "leak", 1);
  auto spec = load(R"(
[tenants.a]
python = ")" + py() + R"("
environment.inherit = ["PATH", "LD_PYVISOR_TEST"]
environment.set = { TOKEN = "a-token" }
[tenants.b]
python = ")" + py() + R"("
environment.set = { TOKEN = "b-token", ONLY_B = "1" }

[pools.a]
tenant = "a"
size = 1
[pools.b]
tenant = "b"
size = 1
)");
  auto d = must_deploy(spec);
  auto a = d.find_pool("a").value();
  auto b = d.find_pool("b").value();
  const std::string show = "import os\nreturn ','.join(sorted(k for k in os.environ if k in "
                           "('TOKEN','ONLY_B','PYVISOR_T_HOST_SECRET','PYTHONPYVISORTEST',"
                           "'LD_PYVISOR_TEST','PATH')))";
  EXPECT_EQ(eval_text(a, show), "LD_PYVISOR_TEST,PATH,TOKEN") << "LD_* only when named";
  EXPECT_EQ(eval_text(b, show), "ONLY_B,PATH,TOKEN")
    << "the default allowlist (PATH, LANG, LC_ALL, TZ): no host secret, no PYTHON*";
  EXPECT_EQ(eval_text(a, "import os\nreturn os.environ['TOKEN']"), "a-token");
  EXPECT_EQ(eval_text(b, "import os\nreturn os.environ['TOKEN']"), "b-token");
  ::unsetenv("PYVISOR_T_HOST_SECRET");
  ::unsetenv("PYTHONPYVISORTEST");
  ::unsetenv("LD_PYVISOR_TEST");
}

TEST_F(deployment_test, a_tenant_reaches_only_the_host_functions_it_is_allowed) {
  rt_->expose("shared_fn", [](int x) { return x + 1; });
  rt_->expose("admin_fn", [](int x) { return x * 100; });
  auto spec = load(R"(
[tenants.t]
python = ")" + py() + R"("
host_functions = ["shared_fn"]
[pools.p]
tenant = "t"
size = 1
[pools.q]
size = 1
)");
  spec.pools[1].options.worker.python = py();  // no tenant: the host's view, every function
  auto d = must_deploy(spec);
  auto p = d.find_pool("p").value();
  auto q = d.find_pool("q").value();
  auto ok = p.eval("return await pyvisor.call('shared_fn', 1)");
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->to<int>().value(), 2);
  auto denied = p.eval("return await pyvisor.call('admin_fn', 1)");
  ASSERT_FALSE(denied);
  EXPECT_NE(denied.error().message.find("not exposed"), std::string::npos) << denied.error().to_string();
  auto other = q.eval("return await pyvisor.call('admin_fn', 1)");
  ASSERT_TRUE(other) << other.error().to_string();
  EXPECT_EQ(other->to<int>().value(), 100);
}

TEST_F(deployment_test, durable_envs_are_made_at_start_and_found_by_name) {
  auto spec = load(R"(
[pools.p]
size = 2
init_script = "base = 40"
[[pools.p.envs]]
name = "cache"
init = "store = {'answer': base + 2}"
)");
  spec.pools[0].options.worker.python = py();
  auto d = must_deploy(spec);
  auto e = d.find_env("p", "cache");
  ASSERT_TRUE(e) << e.error().to_string();
  EXPECT_TRUE(e->durable());
  auto v = e->eval("return store['answer']");
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(v->to<int>().value(), 42);
  EXPECT_EQ(d.find_env("p", "other").error().code, errc::env_not_found);
}

TEST_F(deployment_test, limits_and_the_memory_budget_reach_the_worker) {
  auto spec = load(R"(
[tenants.t]
python = ")" + py() + R"("
limits.open_files = 200
limits.memory = "4GiB"
[pools.small]
tenant = "t"
size = 2
memory_budget = "6GiB"
[pools.plain]
tenant = "t"
size = 1
)");
  auto d = must_deploy(spec);
  auto small = d.find_pool("small").value();
  auto plain = d.find_pool("plain").value();
  const std::string lim =
    "import resource\nreturn '%d %d %d' % (resource.getrlimit(resource.RLIMIT_NOFILE)[0], "
    "resource.getrlimit(resource.RLIMIT_AS)[0], resource.getrlimit(resource.RLIMIT_CORE)[0])";
  EXPECT_EQ(eval_text(small, lim), "200 " + std::to_string((6ull << 30) / 2) + " 0")
    << "the budget split over 2 workers replaces the tenant's memory limit";
  EXPECT_EQ(eval_text(plain, lim), "200 " + std::to_string(4ull << 30) + " 0");
}

TEST_F(deployment_test, a_pool_its_supervisor_restarts_serves_requests_made_meanwhile) {
  auto spec = load(R"(
[pools.p]
size = 1
[supervisors.s]
children = ["p"]
)");
  spec.pools[0].options.worker.python = py();
  auto d = must_deploy(spec);
  auto p = d.find_pool("p").value();
  auto first = p.eval("import os\nreturn os.getpid()");
  ASSERT_TRUE(first);
  // Stop the pool through its supervisor; a request made now waits in the pool's queue.
  auto sup_kids = d.root().which_children().value();
  ASSERT_EQ(sup_kids.size(), 1u);
  auto sub = d.root();
  ASSERT_TRUE(sub.terminate_child("s").has_value());
  std::optional<expected<value>> waiting;
  std::thread caller{[&] { waiting = p.eval("import os\nreturn os.getpid()"); }};
  EXPECT_TRUE(eventually([&] { return p.stats().queued == 1; })) << "it waits in the pool queue";
  ASSERT_TRUE(sub.restart_child("s").has_value());
  caller.join();
  ASSERT_TRUE(waiting.has_value());
  ASSERT_TRUE(*waiting) << waiting->error().to_string();
  EXPECT_NE(waiting->value().to<long long>().value(), first->to<long long>().value())
    << "served by the restarted pool's new worker";
  for (auto& w : p.stats().per_worker)
    track_pid(w.pid);
}

TEST_F(deployment_test, a_bad_spec_is_refused_with_every_problem) {
  runtime_spec spec;
  pool_spec a;
  a.options.name = "a";
  a.tenant = "ghost";
  pool_spec b;
  b.options.name = "b";
  b.tenant = "phantom";
  spec.pools = {a, b};
  auto d = rt_->deploy(spec);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, errc::config_error);
  EXPECT_NE(d.error().message.find("ghost"), std::string::npos) << d.error().message;
  EXPECT_NE(d.error().message.find("phantom"), std::string::npos) << d.error().message;
}

TEST_F(deployment_test, a_missing_venv_is_refused_with_the_fix) {
  auto spec = load(R"(
[tenants.t.venv]
path = "no-such-venv"
python = ")" + py() + R"("
[pools.p]
tenant = "t"
)");
  auto d = rt_->deploy(spec);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, errc::config_error);
  EXPECT_NE(d.error().message.find("missing"), std::string::npos) << d.error().message;
  EXPECT_NE(d.error().message.find("pyvisor env sync"), std::string::npos) << d.error().message;
}

TEST_F(deployment_test, a_python_of_another_version_is_refused_and_nothing_is_left_running) {
  auto spec = load(R"(
[tenants.t]
python = ")" + py() + R"("
python_version = "3.99"
[pools.p]
tenant = "t"
size = 1
)");
  auto d = rt_->deploy(spec);
  ASSERT_FALSE(d);
  EXPECT_EQ(d.error().code, errc::config_error);
  EXPECT_NE(d.error().message.find("python_version is 3.99"), std::string::npos) << d.error().message;
}
