// to_toml: specs built in C++ written as TOML, loaded back and written again give identical
// text (with and without `all`), and the fields survive.
#include "config_test_util.hpp"

namespace pyvisor::config_test {

using namespace std::chrono_literals;

runtime_spec full_spec() {
  runtime_spec s;
  s.runtime = {8, "warning", "json"};
  s.supervisor.strategy = restart_strategy::one_for_all;
  s.supervisor.intensity = 4;
  s.supervisor.period = 20s;
  s.supervisor.backoff = {200ms, 1min, 0.125, 2h};

  tenant_spec alice;
  alice.name = "alice";
  alice.python = "/usr/bin/python3";
  alice.python_version = "3.11";
  alice.venv = venv_spec{"/srv/venvs/alice", "python3.11", true, {"numpy==1.26.4", "re\"q"}};
  alice.environment.inherit = {"PATH", "HOME"};
  alice.environment.set = {{"A", "1"}, {"B C", "x\ty\"z"}};
  alice.limits.memory = std::uint64_t{3} << 30;
  alice.limits.cpu_seconds = 120;
  alice.limits.open_files = 1024;
  alice.limits.file_size = 1000000;
  alice.limits.processes = 32;
  alice.limits.core = std::nullopt;
  alice.identity = {"alice", "1001"};
  alice.sandbox = {sandbox_kind::bwrap, true, "/srv/work/alice", {"/srv/models", "/opt/x"},
                   true, {"ptrace", "mount"}};
  alice.host_functions = std::vector<std::string>{"log"};
  s.tenants.push_back(alice);
  tenant_spec bob;
  bob.name = "bob";
  bob.host_functions = std::vector<std::string>{};
  bob.environment.inherit.clear();
  s.tenants.push_back(bob);

  pool_spec web;
  auto& o = web.options;
  o.name = "web";
  web.tenant = "alice";
  o.workers = 3;
  o.autoscale = {1, 6, 1.5, 2s, 90s, 125ms};
  o.min_ready = 2;
  o.dispatch = dispatch_policy::round_robin;
  o.worker.init_script.code = "import math\n\ndef f(x):\n    return '''x''' + \"y\"\n";
  web.preload = {"json", "os.path"};
  o.worker.args = {"-X", "dev"};
  o.worker.default_timeout = 45s;
  o.worker.init_script_timeout = forever;
  o.queue_timeout = 750ms;
  o.max_inflight_per_worker = 4;
  o.max_queued = 50;
  web.memory_budget = std::uint64_t{6} << 30;
  web.restart = restart_type::temporary;
  o.worker.busy_limits = {1 << 20, 1 << 19, 64, 128, true};
  o.limits = {3s, 4500ms};
  o.recycle = {500, 20, std::size_t{300} << 20, 2s, 10min};
  o.heartbeat = {forever, 7s};
  o.backoff = {0ms, 5s, 0.3, 1min};
  o.breaker = {2, 1500ms, 3min};
  o.worker.shutdown = {3s, 1s};
  o.worker.interrupt = {250ms, forever};
  web.envs = {{"users", "cache = {}", ""}, {"u-1", "", "key 1"}};
  s.pools.push_back(web);

  pool_spec batch;
  batch.options.name = "batch";
  batch.init_file = data_dir + "/init.py";
  batch.options.worker.init_script.code = "";
  batch.options.worker.spawn = spawn_mode::fork_server;  // no tenant: no bwrap
  s.pools.push_back(batch);
  pool_spec solo;
  solo.options.name = "solo";
  solo.options.worker.init_script.code = "x = 'it''s'\r\n";  // no literal string: a CR
  s.pools.push_back(solo);

  s.supervisors.push_back({"app", restart_strategy::rest_for_one, 0, 1h,
                           backoff_policy{200ms, 2min, 0.125, 2h}, {"web", "jobs"}});
  s.supervisors.push_back({"jobs", {}, {}, {}, {}, {"batch"}});
  return s;
}

namespace {

void expect_round_trip(const runtime_spec& s, bool all) {
  auto text = to_toml(s, all);
  auto r = load_config_string(text, "rt.toml", "/");
  ASSERT_TRUE(r.ok()) << text << ::testing::PrintToString(lines(r.problems));
  EXPECT_EQ(to_toml(*r.spec, all), text);
  // The other mode agrees too: the reloaded spec equals the original one.
  EXPECT_EQ(to_toml(*r.spec, !all), to_toml(s, !all));
}

TEST(RoundTrip, FullSpec) {
  auto s = full_spec();
  ASSERT_TRUE(validate(s).empty()) << ::testing::PrintToString(lines(validate(s)));
  expect_round_trip(s, false);
  expect_round_trip(s, true);
}

TEST(RoundTrip, FieldsSurvive) {
  auto s = full_spec();
  auto r = load_config_string(to_toml(s), "rt.toml", "/");
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(lines(r.problems));
  const auto& l = *r.spec;
  EXPECT_EQ(l.runtime.threads, 8u);
  EXPECT_EQ(l.supervisor.backoff.jitter, 0.125);
  const auto& alice = l.tenants.at(0);
  EXPECT_EQ(alice.venv->requirements, (strings{"numpy==1.26.4", "re\"q"}));
  EXPECT_EQ(alice.environment.set.at(1).first, "B C");
  EXPECT_EQ(alice.environment.set.at(1).second, "x\ty\"z");
  EXPECT_FALSE(alice.limits.core);
  EXPECT_EQ(alice.identity.group, "1001");
  EXPECT_EQ(alice.sandbox.deny, (strings{"ptrace", "mount"}));
  ASSERT_TRUE(l.tenants.at(1).host_functions);
  EXPECT_TRUE(l.tenants.at(1).host_functions->empty());
  EXPECT_TRUE(l.tenants.at(1).environment.inherit.empty());
  const auto& web = l.pools.at(0);
  EXPECT_EQ(web.options.worker.init_script.code, s.pools[0].options.worker.init_script.code);
  EXPECT_EQ(web.options.workers, 3u);
  EXPECT_EQ(web.options.autoscale.max_workers, 6u);
  EXPECT_EQ(web.options.autoscale.check_interval, 125ms);
  EXPECT_EQ(web.options.limits.hard, 4500ms);
  EXPECT_EQ(web.options.worker.interrupt.kill_after, forever);
  EXPECT_EQ(web.envs.at(1).key, "key 1");
  EXPECT_EQ(l.pools.at(2).options.worker.init_script.code, "x = 'it''s'\r\n");
  ASSERT_TRUE(l.supervisors.at(0).backoff);
  EXPECT_EQ(l.supervisors.at(0).backoff->cap, 2min);
  EXPECT_EQ(l.supervisors.at(0).intensity, 0);
  EXPECT_FALSE(l.supervisors.at(1).strategy);
  EXPECT_EQ(root_children(l), (strings{"solo", "app"}));
}

TEST(RoundTrip, DefaultsWriteNothing) {
  EXPECT_EQ(to_toml(runtime_spec{}), "");
  runtime_spec s;
  s.pools.push_back({});
  s.pools.back().options.name = "p";
  EXPECT_EQ(to_toml(s), "[pools.p]\n");
  expect_round_trip(s, true);
  expect_round_trip(runtime_spec{}, true);
}

TEST(RoundTrip, ReadableOutput) {
  runtime_spec s;
  s.runtime.threads = 2;
  pool_spec p;
  p.options.name = "web";
  p.options.workers = 4;
  p.options.worker.init_script.code = "import json\nx = 1\n";
  p.options.recycle.max_rss_bytes = std::size_t{512} << 20;
  s.pools.push_back(p);
  s.supervisors.push_back({"app", {}, {}, {}, {}, {"web"}});
  EXPECT_EQ(to_toml(s), R"([runtime]
threads = 2

[pools.web]
size = 4
init_script = '''
import json
x = 1
'''

[pools.web.recycle]
max_rss = "512MiB"

[supervisors.app]
children = ["web"]
)");
}

TEST(RoundTrip, NodeBackoffIsRelativeToTheSupervisorDefaults) {
  runtime_spec s;
  s.supervisor.backoff.base = 1s;
  s.pools.push_back({});
  s.pools.back().options.name = "p";
  s.supervisors.push_back({"a", {}, {}, {}, s.supervisor.backoff, {"p"}});
  auto text = to_toml(s);
  EXPECT_NE(text.find("[supervisors.a.backoff]\n"), std::string::npos) << text;
  auto r = load_config_string(text);
  ASSERT_TRUE(r.ok());
  ASSERT_TRUE(r.spec->supervisors[0].backoff);
  EXPECT_EQ(r.spec->supervisors[0].backoff->base, 1s);
  expect_round_trip(s, false);
}

} // namespace
} // namespace pyvisor::config_test
