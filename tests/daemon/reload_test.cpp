// SIGHUP (docs/http.md, "SIGHUP: reload"): a changed pool is replaced without refusing a request
// of a steady load, an unchanged one keeps its processes; a broken config is rejected with its
// file:line and the running tree keeps serving.
#include <atomic>
#include <mutex>
#include <thread>

#include "daemon_fixture.hpp"

namespace pyvisor::daemon_test {
namespace {

class Reload : public DaemonTest {};

std::string two_pools(int default_size) {
  return make_config(tenant_toml("main") + pool_toml("default", default_size) +
                     pool_toml("other", 1));
}

TEST_F(Reload, ResizeUnderLoadRefusesNothingAndKeepsTheUnchangedPool) {
  ASSERT_TRUE(start(two_pools(2)));
  const json before = pool_status("default");
  ASSERT_TRUE(before.is_object());
  const auto generation = before["generation"];
  const auto old_default = worker_pids("default");
  const auto other_pids = worker_pids("other");
  const auto other_generation = pool_status("other")["generation"];
  ASSERT_EQ(old_default.size(), 2u);
  ASSERT_EQ(other_pids.size(), 1u);
  // A session on each pool: the replaced pool's ends with the reload, the other's stays.
  auto c = client();
  auto s_default = c.post("/v1/pools/default/sessions", {{"init", "k = 'd'"}});
  auto s_other = c.post("/v1/pools/other/sessions", {{"init", "k = 'o'"}});
  ASSERT_EQ(s_default.status, 201) << s_default.describe();
  ASSERT_EQ(s_other.status, 201) << s_other.describe();
  const std::string sd = s_default.doc["id"], so = s_other.doc["id"];

  // 8 keep-alive clients, each looping evals on the pool being replaced (and one in 4 on the
  // unchanged one).
  std::atomic<bool> stop{false};
  std::atomic<long> ok{0};
  std::mutex mu;
  std::vector<std::string> failures;
  std::vector<std::thread> load;
  for (int t = 0; t < 8; ++t)
    load.emplace_back([&, t] {
      gateway_client c(port_, {}, true);
      for (long i = 0; !stop.load(); ++i) {
        const bool other = t == 0 && i % 4 == 0;
        const int n = t * 1000000 + static_cast<int>(i % 1000000);
        auto r = c.eval(other ? "other" : "default", "return n + 1", {{"vars", {{"n", n}}}});
        if (r.status == 200 && r.doc == json({{"value", n + 1}})) {
          ok.fetch_add(1);
        } else {
          std::lock_guard<std::mutex> g{mu};
          failures.push_back(r.describe());
        }
      }
    });
  const auto wait_ok = [&](long n) { return eventually([&] { return ok.load() >= n; }, 30s); };
  EXPECT_TRUE(wait_ok(200)) << "the load does not run: " << ok.load();

  rewrite_config(two_pools(3));
  const long before_reload = ok.load();
  const auto t0 = std::chrono::steady_clock::now();
  signal_daemon(SIGHUP);
  json after;
  EXPECT_TRUE(eventually(
    [&] {
      json s = status();
      if (!s.is_object() || s["reloads"] != 1)
        return false;
      for (auto& p : s["pools"])
        if (p["name"] == "default")
          after = p;
      return true;
    },
    60s))
    << status().dump();
  const auto reload_ms = ms_since(t0);
  // The load keeps going on the new generation.
  EXPECT_TRUE(wait_ok(ok.load() + 200));
  stop = true;
  for (auto& t : load)
    t.join();

  {
    std::lock_guard<std::mutex> g{mu};
    EXPECT_TRUE(failures.empty()) << failures.size() << " requests failed across the reload; first: "
                                  << failures.front();
  }
  std::cout << "[ timing ] reload under load: " << reload_ms << " ms; " << ok.load()
            << " requests ok (" << before_reload << " before the SIGHUP)\n";
  ASSERT_TRUE(after.is_object());
  EXPECT_EQ(after["workers"], 3) << after.dump();
  EXPECT_EQ(after["ready"], 3) << after.dump();
  EXPECT_NE(after["generation"], generation) << after.dump();
  const auto new_default = worker_pids("default");
  EXPECT_EQ(new_default.size(), 3u);
  for (int p : old_default) {
    EXPECT_EQ(std::count(new_default.begin(), new_default.end(), p), 0) << "old worker kept";
    EXPECT_TRUE(eventually([&] { return pyvisor::test::process_gone(p); }))
      << "the old generation's worker " << p << " still runs";
  }
  EXPECT_EQ(worker_pids("other"), other_pids) << "the unchanged pool was restarted";
  EXPECT_EQ(pool_status("other")["generation"], other_generation);
  const std::string m = metrics();
  EXPECT_EQ(metric_value(m, R"(pyvisor_reloads_total{result="ok"})"), 1.0) << m;
  EXPECT_EQ(metric_value(m, R"(pyvisor_pool_workers{pool="default"})"), 3.0) << m;
  EXPECT_NE(stderr_text().find("reloaded: 1 unchanged, 1 started, 1 stopped"), std::string::npos);

  auto ended = c.post("/v1/sessions/" + sd + "/eval", {{"code", "return k"}});
  EXPECT_EQ(ended.status, 410) << ended.describe();
  EXPECT_NE(ended.message().find("reload"), std::string::npos) << ended.body;
  auto kept = c.post("/v1/sessions/" + so + "/eval", {{"code", "return k"}});
  EXPECT_EQ(kept.status, 200) << kept.describe();
  EXPECT_EQ(kept.doc, json({{"value", "o"}}));
}

/// The 1-based line of the first occurrence of `needle` in `text`.
int line_of(const std::string& text, const std::string& needle) {
  const auto at = text.find(needle);
  return at == std::string::npos ? -1
                                 : 1 + static_cast<int>(std::count(text.begin(),
                                                                   text.begin() + static_cast<long>(at), '\n'));
}

TEST_F(Reload, BrokenConfigIsRejectedWithFileLineAndTheTreeKeepsServing) {
  const std::string good = two_pools(2);
  ASSERT_TRUE(start(good));
  const auto pids = worker_pids("default");
  const auto other = worker_pids("other");
  auto c = client();

  // An unknown key.
  const std::string unknown_key = good + "sise = 3\n";  // in [pools.other], the last table
  rewrite_config(unknown_key);
  signal_daemon(SIGHUP);
  const std::string where = config_path() + ":" + std::to_string(line_of(unknown_key, "sise")) + ":";
  EXPECT_TRUE(eventually([&] { return stderr_text().find("reload rejected") != std::string::npos; }))
    << tail(stderr_text());
  EXPECT_NE(stderr_text().find(where), std::string::npos)
    << "no problem logged at " << where << "\n" << tail(stderr_text());
  EXPECT_NE(stderr_text().find("sise"), std::string::npos);
  auto e = c.eval("default", "return 'serving'");
  EXPECT_EQ(e.status, 200) << e.describe();
  EXPECT_EQ(worker_pids("default"), pids);
  EXPECT_EQ(worker_pids("other"), other);
  std::string m = metrics();
  EXPECT_EQ(metric_value(m, R"(pyvisor_reloads_total{result="rejected"})"), 1.0) << m;
  EXPECT_EQ(metric_value(m, R"(pyvisor_reloads_total{result="ok"})"), 0.0) << m;

  // A TOML syntax error.
  const std::string broken = good + "[pools.default\n";
  rewrite_config(broken);
  signal_daemon(SIGHUP);
  EXPECT_TRUE(eventually([&] {
    return metric_value(metrics(), R"(pyvisor_reloads_total{result="rejected"})") == 2.0;
  })) << tail(stderr_text());
  const std::string where2 = config_path() + ":" + std::to_string(line_of(broken, "[pools.default\n")) + ":";
  EXPECT_NE(stderr_text().find(where2), std::string::npos)
    << "no problem logged at " << where2 << "\n" << tail(stderr_text());
  for (int i = 0; i < 5; ++i)
    EXPECT_EQ(c.eval(i % 2 ? "other" : "default", "return 1").status, 200);
  EXPECT_EQ(worker_pids("default"), pids);
  EXPECT_EQ(worker_pids("other"), other);
  EXPECT_EQ(status()["reloads"], 0);

  // The events list has the rejections.
  int rejected = 0;
  const json events = status()["events"];
  for (auto& ev : events)
    if (ev["kind"] == "reload_rejected")
      ++rejected;
  EXPECT_EQ(rejected, 2);
}

} // namespace
} // namespace pyvisor::daemon_test
