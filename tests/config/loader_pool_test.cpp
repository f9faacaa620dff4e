// The loader: [pools.NAME] and its sections mapped onto pool_spec, and every pool rule with its
// position (workers, autoscaling, timeouts, limits, init_file, envs, tenant references).
#include "config_test_util.hpp"

namespace pyvisor::config_test {
namespace {

using namespace std::chrono_literals;

TEST(LoaderPool, EveryKeyMapsOntoTheSpec) {
  auto s = spec_of(R"(
[tenants.t]
[pools.web]
tenant = "t"
size = 3
min_ready = 1
dispatch = "key_affinity"
init_script = "x = 1"
preload = ["json", "os.path"]
spawn = "fork_server"
python_args = ["-X", "dev"]
default_timeout = "10s"
init_timeout = "2m"
queue_timeout = "500ms"
max_inflight_per_worker = 8
max_queued = 100
memory_budget = "4GiB"
restart = "transient"
[pools.web.busy]
high_water = "16MiB"
low_water = "1MiB"
max_inflight = 10
max_queued = 20
disabled = true
[pools.web.time_limits]
soft = "5s"
hard = "6s"
[pools.web.recycle]
max_requests = 1000
max_requests_jitter = 50
max_rss = "256MiB"
rss_check_interval = "1s"
max_idle = "1h"
[pools.web.heartbeat]
interval = "forever"
timeout = "3s"
[pools.web.backoff]
base = "10ms"
cap = "2s"
jitter = 0.5
reset_after = "30s"
[pools.web.breaker]
max_failures = 5
reset_timeout = "2s"
max_reset_timeout = "2m"
[pools.web.autoscale]
inflight_per_worker = 2.5
up_window = "0ms"
idle_timeout = "5m"
check_interval = "100ms"
[pools.web.shutdown]
graceful = "1s"
terminate = "500ms"
[pools.web.interrupt]
grace = "0ms"
kill_after = "forever"
[[pools.web.envs]]
name = "a"
init = "y = 2"
key = "user-1"
[[pools.web.envs]]
name = "b"
)");
  ASSERT_EQ(s.pools.size(), 1u);
  const auto& p = s.pools[0];
  const auto& o = p.options;
  const auto& w = o.worker;
  EXPECT_EQ(o.name, "web");
  EXPECT_EQ(p.tenant, "t");
  EXPECT_EQ(o.workers, 3u);
  EXPECT_EQ(o.min_ready, 1u);
  EXPECT_EQ(o.dispatch, dispatch_policy::key_affinity);
  EXPECT_EQ(w.init_script.code, "x = 1");
  EXPECT_EQ(p.preload, (strings{"json", "os.path"}));
  EXPECT_EQ(w.spawn, spawn_mode::fork_server);
  EXPECT_EQ(w.args, (strings{"-X", "dev"}));
  EXPECT_EQ(w.default_timeout, 10s);
  EXPECT_EQ(w.init_script_timeout, 2min);
  EXPECT_EQ(o.queue_timeout, 500ms);
  EXPECT_EQ(o.max_inflight_per_worker, 8u);
  EXPECT_EQ(o.max_queued, 100u);
  EXPECT_EQ(p.memory_budget, std::uint64_t{4} << 30);
  EXPECT_EQ(p.restart, restart_type::transient);
  EXPECT_EQ(w.busy_limits.high_water, 16u << 20);
  EXPECT_EQ(w.busy_limits.low_water, 1u << 20);
  EXPECT_EQ(w.busy_limits.max_inflight, 10u);
  EXPECT_EQ(w.busy_limits.max_queued, 20u);
  EXPECT_TRUE(w.busy_limits.disabled);
  EXPECT_EQ(o.limits.soft, 5s);
  EXPECT_EQ(o.limits.hard, 6s);
  EXPECT_EQ(o.recycle.max_requests, 1000u);
  EXPECT_EQ(o.recycle.max_requests_jitter, 50u);
  EXPECT_EQ(o.recycle.max_rss_bytes, 256u << 20);
  EXPECT_EQ(o.recycle.rss_check_interval, 1s);
  EXPECT_EQ(o.recycle.max_idle, 1h);
  EXPECT_EQ(o.heartbeat.interval, forever);
  EXPECT_EQ(o.heartbeat.timeout, 3s);
  EXPECT_EQ(o.backoff.base, 10ms);
  EXPECT_EQ(o.backoff.cap, 2s);
  EXPECT_EQ(o.backoff.jitter, 0.5);
  EXPECT_EQ(o.backoff.reset_after, 30s);
  EXPECT_EQ(o.breaker.max_failures, 5u);
  EXPECT_EQ(o.breaker.reset_timeout, 2s);
  EXPECT_EQ(o.breaker.max_reset_timeout, 2min);
  EXPECT_EQ(o.autoscale.inflight_per_worker, 2.5);
  EXPECT_EQ(o.autoscale.up_window, 0ms);
  EXPECT_EQ(o.autoscale.idle_timeout, 5min);
  EXPECT_EQ(o.autoscale.check_interval, 100ms);
  EXPECT_EQ(w.shutdown.graceful, 1s);
  EXPECT_EQ(w.shutdown.terminate, 500ms);
  EXPECT_EQ(w.interrupt.grace, 0ms);
  EXPECT_EQ(w.interrupt.kill_after, forever);
  ASSERT_EQ(p.envs.size(), 2u);
  EXPECT_EQ(p.envs[0].name, "a");
  EXPECT_EQ(p.envs[0].init, "y = 2");
  EXPECT_EQ(p.envs[0].key, "user-1");
  EXPECT_EQ(p.envs[1].name, "b");
  EXPECT_EQ(p.envs[1].key, "");
}

TEST(LoaderPool, DefaultsAndFileOrder) {
  auto s = spec_of("[pools.b]\n[pools.a]\n");
  ASSERT_EQ(s.pools.size(), 2u);
  EXPECT_EQ(s.pools[0].options.name, "b");
  EXPECT_EQ(s.pools[1].options.name, "a");
  const auto& o = s.pools[0].options;
  EXPECT_EQ(o.workers, 2u);
  EXPECT_FALSE(o.min_ready);
  EXPECT_EQ(o.heartbeat.interval, 1s);
  EXPECT_EQ(o.autoscale.max_workers, 0u);
  EXPECT_EQ(s.pools[0].tenant, "");
  EXPECT_EQ(s.pools[0].restart, restart_type::permanent);
}

TEST(LoaderPool, MinAndMaxSetAutoscaling) {
  auto s = spec_of("[pools.a]\nmin = 2\nmax = 6\n[pools.b]\nmin = 0\nmax = 4\n"
                   "[pools.c]\nmin = 1\nmax = 4\nsize = 3\n");
  EXPECT_EQ(s.pools[0].options.workers, 2u);
  EXPECT_EQ(s.pools[0].options.autoscale.min_workers, 2u);
  EXPECT_EQ(s.pools[0].options.autoscale.max_workers, 6u);
  EXPECT_EQ(s.pools[1].options.workers, 1u);
  EXPECT_EQ(s.pools[1].options.autoscale.min_workers, 0u);
  EXPECT_EQ(s.pools[2].options.workers, 3u);
  EXPECT_EQ(problems("[pools.a]\nmin = 2\n"),
            strings{"t.toml:2:7: pools.a.min: min needs max (autoscaling takes both)"});
  EXPECT_EQ(problems("[pools.a]\nmax = 2\n"),
            strings{"t.toml:2:7: pools.a.max: max needs min (autoscaling takes both)"});
  EXPECT_EQ(problems("[pools.a]\nmin = 3\nmax = 2\n"),
            strings{"t.toml:3:7: pools.a.max: max (2) must not be below min (3)"});
  EXPECT_EQ(problems("[pools.a]\nmin = 1\nmax = 2\nsize = 5\n"),
            strings{"t.toml:4:8: pools.a.size: size (5) must lie within min (1) and max (2)"});
  EXPECT_EQ(problems("[pools.a]\nmin = 1\nmax = 0\n"),
            strings{"t.toml:3:7: pools.a.max: must be at least 1, got 0"});
  EXPECT_EQ(problems("[pools.a]\nmin = 0\nmax = 0\n"),
            strings{"t.toml:3:7: pools.a.max: must be at least 1, got 0"});
}

TEST(LoaderPool, WorkerAndQueueRanges) {
  EXPECT_EQ(problems(R"([pools.a]
size = 0
max_inflight_per_worker = 0
queue_timeout = "0ms"
default_timeout = "0s"
init_timeout = "0s"
)"),
            (strings{"t.toml:2:8: pools.a.size: must be at least 1, got 0",
                     "t.toml:3:27: pools.a.max_inflight_per_worker: must be at least 1, got 0",
                     "t.toml:4:17: pools.a.queue_timeout: must be positive, got 0ms",
                     "t.toml:5:19: pools.a.default_timeout: must be positive, got 0ms",
                     "t.toml:6:16: pools.a.init_timeout: must be positive, got 0ms"}));
  EXPECT_EQ(problems("[pools.a]\nsize = 2\nmin_ready = 3\n"),
            strings{"t.toml:3:13: pools.a.min_ready: min_ready (3) must not exceed the worker "
                    "count (2)"});
  EXPECT_EQ(problems("[pools.a]\nmemory_budget = 1000\n"),
            strings{"t.toml:2:17: pools.a.memory_budget: must be at least 1MiB, got 1KB"});
}

TEST(LoaderPool, SectionRanges) {
  EXPECT_EQ(problems(R"([pools.a.busy]
high_water = 0
low_water = "1MiB"
max_inflight = 0
[pools.a.time_limits]
soft = "5s"
hard = "5s"
[pools.a.recycle]
max_idle = "0s"
[pools.a.heartbeat]
interval = "0s"
timeout = "0s"
[pools.a.breaker]
max_failures = 0
reset_timeout = "2s"
max_reset_timeout = "1s"
[pools.a.autoscale]
inflight_per_worker = 0
idle_timeout = "0s"
check_interval = "0s"
[pools.a.backoff]
jitter = 2
)"),
            (strings{
              "t.toml:2:14: pools.a.busy.high_water: must be at least 1, got 0",
              "t.toml:3:13: pools.a.busy.low_water: low_water (1MiB) must not exceed high_water "
              "(0B)",
              "t.toml:4:16: pools.a.busy.max_inflight: must be at least 1, got 0",
              "t.toml:7:8: pools.a.time_limits.hard: hard (5s) must be above soft (5s)",
              "t.toml:9:12: pools.a.recycle.max_idle: must be positive, got 0ms",
              "t.toml:11:12: pools.a.heartbeat.interval: must be positive, got 0ms",
              "t.toml:12:11: pools.a.heartbeat.timeout: must be positive, got 0ms",
              "t.toml:14:16: pools.a.breaker.max_failures: must be at least 1, got 0",
              "t.toml:16:21: pools.a.breaker.max_reset_timeout: max_reset_timeout (1s) must not "
              "be below reset_timeout (2s)",
              "t.toml:18:23: pools.a.autoscale.inflight_per_worker: must be positive, got 0",
              "t.toml:19:16: pools.a.autoscale.idle_timeout: must be positive, got 0ms",
              "t.toml:20:18: pools.a.autoscale.check_interval: must be positive, got 0ms",
              "t.toml:22:10: pools.a.backoff.jitter: must be at least 0 and below 1, got 2",
            }));
  // Disabled busy limits are not checked; a forever heartbeat interval is off.
  spec_of("[pools.a.busy]\nhigh_water = 0\ndisabled = true\n[pools.a.heartbeat]\n"
          "interval = \"forever\"\ntimeout = \"0s\"\n");
}

TEST(LoaderPool, InitFile) {
  auto s = spec_of("[pools.a]\ninit_file = \"init.py\"\n");
  EXPECT_EQ(s.pools[0].init_file, data_dir + "/init.py");
  EXPECT_EQ(problems("[pools.a]\ninit_file = \"missing.py\"\n"),
            strings{"t.toml:2:13: pools.a.init_file: init_file \"" + data_dir +
                    "/missing.py\" does not exist"});
  EXPECT_EQ(problems("[pools.a]\ninit_file = \".\"\n"),
            strings{"t.toml:2:13: pools.a.init_file: init_file \"" + data_dir +
                    "/\" is not a regular file"});
  EXPECT_EQ(problems("[pools.a]\ninit_script = \"x = 1\"\ninit_file = \"init.py\"\n"),
            strings{"t.toml:3:13: pools.a.init_file: init_file and init_script exclude each "
                    "other: use one"});
}

TEST(LoaderPool, PreloadAndEnvs) {
  EXPECT_EQ(problems("[pools.a]\npreload = [\"os.path\", \"a b\", \"1x\", \"a..b\"]\n"),
            (strings{"t.toml:2:23: pools.a.preload[1]: invalid module name \"a b\"",
                     "t.toml:2:30: pools.a.preload[2]: invalid module name \"1x\"",
                     "t.toml:2:36: pools.a.preload[3]: invalid module name \"a..b\""}));
  EXPECT_EQ(problems("[pools.a]\n[[pools.a.envs]]\ninit = \"x\"\n[[pools.a.envs]]\nname = \"e\"\n"
                     "[[pools.a.envs]]\nname = \"e\"\n"),
            (strings{"t.toml:2:1: pools.a.envs[0].name: an env needs a name",
                     "t.toml:7:8: pools.a.envs[2].name: env 'e' is declared twice"}));
}

TEST(LoaderPool, UnknownTenant) {
  EXPECT_EQ(problems("[tenants.default]\n[pools.a]\ntenant = \"defualt\"\n"),
            strings{"t.toml:3:10: pools.a.tenant: unknown tenant 'defualt' (did you mean "
                    "'default'?)"});
  EXPECT_EQ(problems("[pools.a]\ntenant = \"x\"\n"),
            strings{"t.toml:2:10: pools.a.tenant: unknown tenant 'x'"});
}

} // namespace
} // namespace pyvisor::config_test
