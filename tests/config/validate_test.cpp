// validate() on specs built in C++: the same rules as the loader, problems with a path and no
// position; the things only C++ can express (duplicates, negative durations, unknown strings).
#include "config_test_util.hpp"

namespace pyvisor::config_test {
namespace {

using namespace std::chrono_literals;

pool_spec pool(std::string name) {
  pool_spec p;
  p.options.name = std::move(name);
  return p;
}

tenant_spec tenant(std::string name) {
  tenant_spec t;
  t.name = std::move(name);
  return t;
}

TEST(Validate, DefaultSpecIsValid) {
  EXPECT_TRUE(validate(runtime_spec{}).empty());
  runtime_spec s;
  s.tenants.push_back(tenant("default"));
  s.pools.push_back(pool("web"));
  s.pools.back().tenant = "default";
  s.supervisors.push_back({"app", {}, {}, {}, {}, {"web"}});
  EXPECT_TRUE(validate(s).empty());
}

TEST(Validate, ProblemsHavePathsAndNoPosition) {
  runtime_spec s;
  s.runtime.log_level = "loud";
  s.pools.push_back(pool("web"));
  s.pools.back().options.workers = 0;
  auto problems = validate(s);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_EQ(problems[0].file, "");
  EXPECT_EQ(problems[0].line, 0);
  EXPECT_EQ(problems[0].column, 0);
  EXPECT_EQ(lines(problems),
            (strings{"runtime.log_level: invalid value \"loud\" (expected one of: debug, info, "
                     "warning, error)",
                     "pools.web.size: must be at least 1, got 0"}));
}

TEST(Validate, DuplicatesOnlyCxxCanMake) {
  runtime_spec s;
  s.tenants = {tenant("t"), tenant("t")};
  s.pools = {pool("p"), pool("p")};
  s.supervisors.push_back({"s", {}, {}, {}, {}, {"p"}});
  s.supervisors.push_back({"s", {}, {}, {}, {}, {"p"}});
  EXPECT_EQ(lines(validate(s)),
            (strings{"tenants.t: duplicate tenant name 't'", "pools.p: duplicate pool name 'p'",
                     "supervisors.s: duplicate supervisor name 's'",
                     "supervisors.s.children[0]: 'p' is already a child of supervisor 's'"}));
}

TEST(Validate, NegativeDurationsAndBadValues) {
  runtime_spec s;
  s.supervisor.period = -1s;
  s.supervisor.backoff.base = -5ms;
  auto p = pool("p");
  p.options.worker.shutdown.graceful = -1ms;
  p.options.worker.interrupt.kill_after = -2ms;
  p.options.recycle.rss_check_interval = -3ms;
  p.options.autoscale.up_window = -1ms;
  p.options.autoscale.inflight_per_worker = -0.5;
  s.pools.push_back(p);
  s.supervisors.push_back({"n", {}, -1, 0ms, {}, {"p"}});
  EXPECT_EQ(lines(validate(s)),
            (strings{
              "supervisor.period: must be positive, got -1000ms",
              "supervisor.backoff.base: must not be negative, got -5ms",
              "pools.p.recycle.rss_check_interval: must not be negative, got -3ms",
              "pools.p.autoscale.inflight_per_worker: must be positive, got -0.5",
              "pools.p.autoscale.up_window: must not be negative, got -1ms",
              "pools.p.shutdown.graceful: must not be negative, got -1ms",
              "pools.p.interrupt.kill_after: must not be negative, got -2ms",
              "supervisors.n.intensity: must be at least 0, got -1",
              "supervisors.n.period: must be positive, got 0ms",
            }));
}

TEST(Validate, PathsMustBeAbsoluteAndFilesMustExist) {
  runtime_spec s;
  auto t = tenant("t");
  t.venv = venv_spec{};
  t.venv->path = "relative/venv";
  t.sandbox.kind = sandbox_kind::bwrap;
  t.sandbox.work_dir = "work";
  s.tenants.push_back(t);
  auto p = pool("p");
  p.init_file = data_dir + "/init.py";
  s.pools.push_back(p);
  auto q = pool("q");
  q.init_file = "/nonexistent/pyvisor/init.py";
  s.pools.push_back(q);
  EXPECT_EQ(lines(validate(s)),
            (strings{"tenants.t.venv.path: must be an absolute path, got \"relative/venv\"",
                     "tenants.t.work_dir: must be an absolute path, got \"work\"",
                     "pools.q.init_file: init_file \"/nonexistent/pyvisor/init.py\" does not "
                     "exist"}));
}

TEST(Validate, AForkServerPoolCannotUseABwrapTenant) {
  runtime_spec s;
  auto boxed = tenant("boxed");
  boxed.sandbox.kind = sandbox_kind::bwrap;
  s.tenants.push_back(boxed);
  s.tenants.push_back(tenant("plain"));
  auto p = pool("p");
  p.tenant = "boxed";
  p.options.worker.spawn = spawn_mode::fork_server;
  s.pools.push_back(p);
  auto q = pool("q");
  q.tenant = "plain";
  q.options.worker.spawn = spawn_mode::fork_server;
  s.pools.push_back(q);
  auto r = pool("r");
  r.tenant = "boxed";  // cold: fine
  s.pools.push_back(r);
  EXPECT_EQ(lines(validate(s)),
            (strings{"pools.p.spawn: spawn = \"fork_server\" does not work in tenant 'boxed' "
                     "(sandbox = \"bwrap\"): use \"cold\""}));
}

TEST(Validate, InitScriptAndInitFileExcludeEachOther) {
  runtime_spec s;
  auto p = pool("p");
  p.init_file = data_dir + "/init.py";
  p.options.worker.init_script.code = "x = 1";
  s.pools.push_back(p);
  EXPECT_EQ(lines(validate(s)),
            strings{"pools.p.init_file: init_file and init_script exclude each other: use one"});
}

TEST(Validate, EnvironmentSetTwice) {
  runtime_spec s;
  auto t = tenant("t");
  t.environment.set = {{"A", "1"}, {"A", "2"}};
  s.tenants.push_back(t);
  EXPECT_EQ(lines(validate(s)),
            strings{"tenants.t.environment.set.A: variable 'A' is set twice"});
}

TEST(Validate, AutoscaleWithoutMax) {
  runtime_spec s;
  auto p = pool("p");
  p.options.autoscale.min_workers = 2;
  s.pools.push_back(p);
  EXPECT_EQ(lines(validate(s)), strings{"pools.p.max: must be at least 1, got 0"});
}

TEST(Validate, NamesWithOddCharactersAreQuotedInPaths) {
  runtime_spec s;
  s.pools.push_back(pool("a b"));
  s.pools.back().options.workers = 0;
  s.pools.push_back(pool(""));
  EXPECT_EQ(lines(validate(s)),
            (strings{"pools.\"a b\": invalid name 'a b': use letters, digits, '_' and '-'",
                     "pools.\"\": invalid name '': use letters, digits, '_' and '-'",
                     "pools.\"a b\".size: must be at least 1, got 0"}));
}

} // namespace
} // namespace pyvisor::config_test
