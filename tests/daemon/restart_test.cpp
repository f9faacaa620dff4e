// A worker killed under the daemon (docs/http.md, "Status", "Metrics"): the restart shows in
// /v1/status, /metrics and the events; and /readyz turns 503 at once when a pool has no ready
// worker left.
#include "daemon_fixture.hpp"

namespace pyvisor::daemon_test {
namespace {

class Restart : public DaemonTest {};

TEST_F(Restart, KilledWorkerRestartsVisibleInStatusMetricsEvents) {
  ASSERT_TRUE(start(make_config(default_pool(2))));
  json before = pool_status("default");
  ASSERT_TRUE(before.is_object());
  const std::string wid = before["per_worker"][0]["id"];
  const int pid = before["per_worker"][0]["pid"];
  note_pid(pid);
  kill_worker(pid);

  json w;
  ASSERT_TRUE(eventually([&] {
    json p = pool_status("default");
    if (!p.is_object())
      return false;
    for (auto& x : p["per_worker"])
      if (x["id"] == wid && x["state"] == "ready" && x["pid"] != pid) {
        w = x;
        return true;
      }
    return false;
  })) << pool_status("default").dump();
  note_pid(w["pid"]);
  EXPECT_EQ(w["restarts"], 1) << w.dump();
  ASSERT_TRUE(w["last_exit"].is_object()) << w.dump();
  EXPECT_EQ(w["last_exit"]["signal"], 9) << w.dump();
  EXPECT_EQ(w["last_exit"]["kind"], "crash") << w.dump();

  json p = pool_status("default");
  EXPECT_EQ(p["restarts"], 1) << p.dump();
  EXPECT_EQ(p["ready"], 2) << p.dump();

  const std::string m = metrics();
  EXPECT_EQ(metric_value(m, R"(pyvisor_worker_restarts_total{pool="default"})"), 1.0) << m;
  EXPECT_EQ(metric_value(m, R"(pyvisor_worker_restarts{pool="default",worker=")" + wid + "\"}"),
            1.0)
    << m;

  bool exited = false;
  const json events = status()["events"];
  for (auto& e : events)
    if (e["kind"] == "worker_exited" && e["pool"] == "default" && e["worker"] == wid &&
        e["pid"] == pid)
      exited = true;
  EXPECT_TRUE(exited) << events.dump();

  // Served by the new process.
  auto r = client().eval("default", "return 'ok'");
  EXPECT_EQ(r.status, 200) << r.describe();
}

TEST_F(Restart, ReadyzTurns503WhenAPoolLosesAllItsWorkers) {
  const std::string flag = path("flag");
  const std::string flaky_init = "init_script = '''\nimport os\nif os.path.exists(" +
                                 json(flag).dump() + "):\n    raise SystemExit(3)\n'''\n";
  ASSERT_TRUE(start(make_config(tenant_toml("main") + pool_toml("flaky", 1, "main", flaky_init) +
                                pool_toml("steady", 1))));
  auto c = client();
  auto r0 = c.get("/readyz");
  ASSERT_EQ(r0.status, 200) << r0.describe();

  write_text(flag, "");
  const auto pids = worker_pids("flaky");
  ASSERT_EQ(pids.size(), 1u);
  kill_worker(pids[0]);
  const auto t0 = std::chrono::steady_clock::now();
  reply rz;
  ASSERT_TRUE(eventually(
    [&] {
      rz = c.get("/readyz");
      return rz.status == 503;
    },
    10s))
    << rz.describe();
  const auto took = ms_since(t0);
  EXPECT_LE(took, scaled(1s).count()) << "/readyz turned 503 only " << took << " ms after the kill";
  EXPECT_EQ(rz.doc["ready"], false) << rz.body;
  EXPECT_EQ(rz.doc["pools"]["flaky"]["ready"], 0) << rz.body;
  EXPECT_EQ(rz.doc["pools"]["steady"]["ready"], 1) << rz.body;
  std::cout << "[ timing ] /readyz 503 " << took << " ms after the pool's last worker died\n";

  // The restarts fail (the init script exits while the flag exists): the breaker opens and the
  // daemon stays unready, while the other pool keeps serving.
  ASSERT_TRUE(eventually([&] {
    json p = pool_status("flaky");
    return p.is_object() && p["breaker_open"] == true;
  })) << pool_status("flaky").dump();
  EXPECT_EQ(c.get("/readyz").status, 503);
  EXPECT_EQ(status()["ready"], false);
  auto steady = c.eval("steady", "return 5");
  EXPECT_EQ(steady.status, 200) << steady.describe();
  auto flaky = c.eval("flaky", "return 5", {{"timeout", 0.5}});
  EXPECT_TRUE(flaky.status == 503 || flaky.status == 504) << flaky.describe();
  const std::string m = metrics();
  EXPECT_EQ(metric_value(m, R"(pyvisor_pool_ready_workers{pool="flaky"})"), 0.0) << m;
  EXPECT_EQ(metric_value(m, R"(pyvisor_pool_breaker_open{pool="flaky"})"), 1.0) << m;

  // Once starts succeed again the breaker's probe brings it back.
  std::filesystem::remove(flag);
  EXPECT_TRUE(eventually([&] { return c.get("/readyz").status == 200; }, 30s))
    << pool_status("flaky").dump();
}

} // namespace
} // namespace pyvisor::daemon_test
