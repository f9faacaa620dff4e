// The loader: syntax errors, unknown keys with did-you-mean, wrong types, bad enum values,
// every problem at once and in file order.
#include "config_test_util.hpp"

namespace pyvisor::config_test {
namespace {

TEST(LoaderTypes, EmptyTextIsTheDefaults) {
  auto s = spec_of("");
  EXPECT_EQ(s.runtime.threads, 0u);
  EXPECT_EQ(s.runtime.log_level, "info");
  EXPECT_EQ(s.supervisor.intensity, 1);
  EXPECT_TRUE(s.tenants.empty());
  EXPECT_TRUE(s.pools.empty());
  EXPECT_TRUE(s.supervisors.empty());
}

TEST(LoaderTypes, SyntaxErrorHasAPosition) {
  auto r = load("[runtime]\nthreads = 4\n[pools.web\nsize = 2\n");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_FALSE(r.spec);
  EXPECT_EQ(r.problems[0].file, "t.toml");
  EXPECT_EQ(r.problems[0].line, 3);
  EXPECT_GT(r.problems[0].column, 0);
  EXPECT_EQ(r.problems[0].path, "");
  EXPECT_FALSE(r.problems[0].message.empty());
}

TEST(LoaderTypes, DuplicateTableIsASyntaxError) {
  auto r = load("[pools.web]\nsize = 1\n[pools.web]\nsize = 2\n");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].line, 3);
}

TEST(LoaderTypes, UnknownKeysWithDidYouMean) {
  EXPECT_EQ(problems("[runtime]\nthreds = 4\n"),
            strings{"t.toml:2:1: runtime.threds: unknown key 'threds' (did you mean 'threads'?)"});
  EXPECT_EQ(problems("[pool.web]\nsize = 1\n"),
            strings{"t.toml:1:2: pool: unknown key 'pool' (did you mean 'pools'?)"});
  EXPECT_EQ(problems("zzz = 1\n"), strings{"t.toml:1:1: zzz: unknown key 'zzz'"});
  EXPECT_EQ(problems("[pools.web]\nsise = 1\n"),
            strings{"t.toml:2:1: pools.web.sise: unknown key 'sise' (did you mean 'size'?)"});
  EXPECT_EQ(problems("[pools.web.busy]\nhigh_watr = 10\n"),
            strings{"t.toml:2:1: pools.web.busy.high_watr: unknown key 'high_watr' (did you "
                    "mean 'high_water'?)"});
  EXPECT_EQ(problems("[tenants.a.limits]\n  memry = \"1GiB\"\n"),
            strings{"t.toml:2:3: tenants.a.limits.memry: unknown key 'memry' (did you mean "
                    "'memory'?)"});
  EXPECT_EQ(problems("[[pools.web.envs]]\nname = \"a\"\nint = \"x = 1\"\n"),
            strings{"t.toml:3:1: pools.web.envs[0].int: unknown key 'int' (did you mean "
                    "'init'?)"});
  EXPECT_EQ(problems("[supervisors.app]\nchildren = [\"web\"]\nstratgy = \"one_for_all\"\n"
                     "[pools.web]\n"),
            strings{"t.toml:3:1: supervisors.app.stratgy: unknown key 'stratgy' (did you mean "
                    "'strategy'?)"});
}

TEST(LoaderTypes, WrongTypes) {
  EXPECT_EQ(problems("[runtime]\nthreads = \"4\"\n"),
            strings{"t.toml:2:11: runtime.threads: expected an integer, got string"});
  EXPECT_EQ(problems("[supervisor]\nperiod = 5\n"),
            strings{"t.toml:2:10: supervisor.period: expected a duration string like \"5s\", "
                    "got integer"});
  EXPECT_EQ(problems("[supervisor.backoff]\njitter = \"0.1\"\n"),
            strings{"t.toml:2:10: supervisor.backoff.jitter: expected a number, got string"});
  EXPECT_EQ(problems("[tenants.a]\nnetwork = 1\n"),
            strings{"t.toml:2:11: tenants.a.network: expected a boolean (true or false), got "
                    "integer"});
  EXPECT_EQ(problems("[tenants.a]\nhost_functions = \"f\"\n"),
            strings{"t.toml:2:18: tenants.a.host_functions: expected an array of strings, got "
                    "string"});
  EXPECT_EQ(problems("[tenants.a]\nsandbox = \"bwrap\"\nread_only = [\"/srv\", 1]\n"),
            strings{"t.toml:3:22: tenants.a.read_only[1]: expected a string, got integer"});
  EXPECT_EQ(problems("[tenants.a.limits]\nmemory = 1.5\n"),
            strings{"t.toml:2:10: tenants.a.limits.memory: expected a size (an integer of "
                    "bytes, a string like \"512MiB\", or \"inherit\"), got float"});
  EXPECT_EQ(problems("[pools.web]\nmemory_budget = true\n"),
            strings{"t.toml:2:17: pools.web.memory_budget: expected a size (an integer of "
                    "bytes or a string like \"512MiB\"), got boolean"});
  EXPECT_EQ(problems("[tenants.a]\nvenv = \"/srv/venv\"\n"),
            strings{"t.toml:2:8: tenants.a.venv: expected a table, got string"});
  EXPECT_EQ(problems("pools = 3\n"), strings{"t.toml:1:9: pools: expected a table, got integer"});
  EXPECT_EQ(problems("[pools]\nweb = 3\n"),
            strings{"t.toml:2:7: pools.web: expected a table, got integer"});
  EXPECT_EQ(problems("[pools.web]\nenvs = [1]\n"),
            strings{"t.toml:2:9: pools.web.envs[0]: expected a table, got integer"});
  EXPECT_EQ(problems("[pools.web]\nenvs = 1\n"),
            strings{"t.toml:2:8: pools.web.envs: expected an array, got integer"});
  EXPECT_EQ(problems("[tenants.a.environment]\nset = { A = 1 }\n"),
            strings{"t.toml:2:13: tenants.a.environment.set.A: expected a string, got integer"});
  EXPECT_EQ(problems("[tenants.a.environment]\nset = [\"A=1\"]\n"),
            strings{"t.toml:2:7: tenants.a.environment.set: expected a table of strings like "
                    "{ NAME = \"value\" }, got array"});
  EXPECT_EQ(problems("[supervisor]\nperiod = 2024-01-01\n"),
            strings{"t.toml:2:10: supervisor.period: expected a duration string like \"5s\", "
                    "got date"});
}

TEST(LoaderTypes, BadDurationsAndSizesKeepParseText) {
  EXPECT_EQ(problems("[supervisor]\nperiod = \"5x\"\n"),
            strings{"t.toml:2:10: supervisor.period: invalid duration \"5x\": unknown unit \"x\" "
                    "(use ms, s, m or h)"});
  EXPECT_EQ(problems("[pools.web.recycle]\nmax_rss = \"1.5B\"\n"),
            strings{"t.toml:2:11: pools.web.recycle.max_rss: invalid size \"1.5B\": not a "
                    "whole number of bytes"});
}

TEST(LoaderTypes, IntegersOutOfTheirType) {
  EXPECT_EQ(problems("[pools.web]\nmax_queued = -1\n"),
            strings{"t.toml:2:14: pools.web.max_queued: must not be negative, got -1"});
  EXPECT_EQ(problems("[supervisor]\nintensity = 3000000000\n"),
            strings{"t.toml:2:13: supervisor.intensity: must be between -2147483648 and "
                    "2147483647, got 3000000000"});
  EXPECT_EQ(problems("[pools.web.busy]\nlow_water = -5\n"),
            strings{"t.toml:2:13: pools.web.busy.low_water: must not be negative, got -5"});
}

TEST(LoaderTypes, BadEnumValuesListTheValidOnes) {
  EXPECT_EQ(problems("[supervisor]\nstrategy = \"one_for_none\"\n"),
            strings{"t.toml:2:12: supervisor.strategy: invalid value \"one_for_none\" (expected "
                    "one of: one_for_one, one_for_all, rest_for_one)"});
  EXPECT_EQ(problems("[tenants.a]\nsandbox = \"docker\"\n"),
            strings{"t.toml:2:11: tenants.a.sandbox: invalid value \"docker\" (expected one of: "
                    "none, bwrap)"});
  EXPECT_EQ(problems("[pools.web]\ndispatch = \"random\"\n"),
            strings{"t.toml:2:12: pools.web.dispatch: invalid value \"random\" (expected one "
                    "of: least_loaded, round_robin, key_affinity)"});
  EXPECT_EQ(problems("[pools.web]\nspawn = \"warm\"\n"),
            strings{"t.toml:2:9: pools.web.spawn: invalid value \"warm\" (expected one of: "
                    "cold, fork_server)"});
  EXPECT_EQ(problems("[pools.web]\nrestart = \"never\"\n"),
            strings{"t.toml:2:11: pools.web.restart: invalid value \"never\" (expected one of: "
                    "permanent, transient, temporary)"});
  EXPECT_EQ(problems("[runtime]\nlog_level = \"verbose\"\n"),
            strings{"t.toml:2:13: runtime.log_level: invalid value \"verbose\" (expected one "
                    "of: debug, info, warning, error)"});
  EXPECT_EQ(problems("[runtime]\nlog_format = \"xml\"\n"),
            strings{"t.toml:2:14: runtime.log_format: invalid value \"xml\" (expected one of: "
                    "text, json)"});
  EXPECT_EQ(problems("[supervisors.a]\nchildren = [\"w\"]\nstrategy = 1\n[pools.w]\n"),
            strings{"t.toml:3:12: supervisors.a.strategy: expected a string, got integer"});
}

TEST(LoaderTypes, EveryProblemAtOnceInFileOrder) {
  const char* text = R"([runtime]
log_level = "loud"
threads = -2

[pools.web]
size = 0
tenant = "nobody"
wokers = 3

[supervisors.app]
children = ["web", "db"]
)";
  EXPECT_EQ(problems(text),
            (strings{
              "t.toml:2:13: runtime.log_level: invalid value \"loud\" (expected one of: debug, "
              "info, warning, error)",
              "t.toml:3:11: runtime.threads: must not be negative, got -2",
              "t.toml:6:8: pools.web.size: must be at least 1, got 0",
              "t.toml:7:10: pools.web.tenant: unknown tenant 'nobody'",
              "t.toml:8:1: pools.web.wokers: unknown key 'wokers'",
              "t.toml:11:20: supervisors.app.children[1]: unknown child 'db': no pool or "
              "supervisor has that name",
            }));
  auto r = load(text);
  EXPECT_FALSE(r.spec);
  EXPECT_FALSE(r.ok());
}

TEST(LoaderTypes, ProblemToString) {
  config_problem p{"f.toml", 3, 7, "pools.web.size", "must be at least 1, got 0"};
  EXPECT_EQ(p.to_string(), "f.toml:3:7: pools.web.size: must be at least 1, got 0");
  p.path.clear();
  EXPECT_EQ(p.to_string(), "f.toml:3:7: must be at least 1, got 0");
  config_problem q{"", 0, 0, "pools.web.size", "must be at least 1, got 0"};
  EXPECT_EQ(q.to_string(), "pools.web.size: must be at least 1, got 0");
  config_problem f{"f.toml", 0, 0, "", "cannot read the file: No such file or directory"};
  EXPECT_EQ(f.to_string(), "f.toml: cannot read the file: No such file or directory");
}

TEST(LoaderTypes, MissingFileAndDirectory) {
  auto r = load_config(data_dir + "/no-such.toml");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].to_string(),
            data_dir + "/no-such.toml: cannot read the file: No such file or directory");
  auto d = load_config(data_dir);
  ASSERT_EQ(d.problems.size(), 1u);
  EXPECT_EQ(d.problems[0].message, "cannot read the file: it is a directory");
}

TEST(LoaderTypes, QuotedNamesInPaths) {
  EXPECT_EQ(problems("[pools.\"my pool\"]\nsize = 0\n"),
            (strings{"t.toml:1:1: pools.\"my pool\": invalid name 'my pool': use letters, "
                     "digits, '_' and '-'",
                     "t.toml:2:8: pools.\"my pool\".size: must be at least 1, got 0"}));
}

} // namespace
} // namespace pyvisor::config_test
