// The daemon's basics over real HTTP (docs/http.md, "Endpoints" and "Errors"): the ready line,
// health and readiness, eval and call, Python errors as 200 with the error object, the
// gateway's own refusals (404, 400, 405/404) and a timeout (504).
#include <csignal>
#include <cstdio>
#include <fstream>
#include <iterator>

#include "daemon_fixture.hpp"

namespace pyvisor::daemon_test {
namespace {

class Basic : public DaemonTest {};

TEST_F(Basic, ReadyLineHealthEvalCallAndErrors) {
  ASSERT_TRUE(start(make_config(default_pool(2))));
  EXPECT_NE(ready_line_.find("(pools: default 2/2)"), std::string::npos) << ready_line_;
  auto c = client();

  auto h = c.get("/healthz");
  EXPECT_EQ(h.status, 200) << h.describe();
  EXPECT_EQ(h.doc, json({{"status", "ok"}}));
  auto rz = c.get("/readyz");
  EXPECT_EQ(rz.status, 200) << rz.describe();
  EXPECT_EQ(rz.doc["ready"], true);
  EXPECT_EQ(rz.doc["pools"]["default"]["ready"], 2) << rz.body;

  auto e = c.eval("default", "return 1 + 1");
  EXPECT_EQ(e.status, 200) << e.describe();
  EXPECT_EQ(e.doc, json({{"value", 2}}));

  auto call = c.post("/v1/pools/default/call", {{"name", "math.hypot"}, {"args", {3, 4}}});
  EXPECT_EQ(call.status, 200) << call.describe();
  EXPECT_EQ(call.doc, json({{"value", 5.0}}));

  // vars bound in the env the code runs in.
  auto v = c.eval("default", "return x * 2", {{"vars", {{"x", 21}}}});
  EXPECT_EQ(v.status, 200) << v.describe();
  EXPECT_EQ(v.doc, json({{"value", 42}}));

  // A Python exception is a completed call: 200 with the error object.
  auto ex = c.eval("default", "return 1 / 0");
  EXPECT_EQ(ex.status, 200) << ex.describe();
  EXPECT_EQ(ex.code(), "python_exception") << ex.body;
  EXPECT_EQ(ex.doc["error"]["type"], "ZeroDivisionError") << ex.body;
  ASSERT_TRUE(ex.doc["error"]["traceback"].is_array()) << ex.body;
  EXPECT_FALSE(ex.doc["error"]["traceback"].empty()) << ex.body;
  EXPECT_NE(ex.doc["error"]["message"].get<std::string>().find("division by zero"),
            std::string::npos)
    << ex.body;

  auto se = c.eval("default", "return (");
  EXPECT_EQ(se.status, 200) << se.describe();
  EXPECT_EQ(se.code(), "syntax_error") << se.body;

  // The gateway's refusals, each in the one error shape.
  auto np = c.eval("nosuchpool", "return 1");
  EXPECT_EQ(np.status, 404) << np.describe();
  EXPECT_EQ(np.code(), "not_found") << np.body;

  auto bad = c.post_raw("/v1/pools/default/eval", "{\"code\": ");
  EXPECT_EQ(bad.status, 400) << bad.describe();
  EXPECT_EQ(bad.code(), "bad_request") << bad.body;

  auto unknown = c.post("/v1/pools/default/eval", {{"code", "return 1"}, {"colour", "red"}});
  EXPECT_EQ(unknown.status, 400) << unknown.describe();
  EXPECT_EQ(unknown.code(), "bad_request") << unknown.body;
  EXPECT_NE(unknown.message().find("colour"), std::string::npos) << unknown.body;

  auto missing = c.post("/v1/pools/default/eval", json::object());
  EXPECT_EQ(missing.status, 400) << missing.describe();

  auto media = c.post_raw("/v1/pools/default/eval", "{\"code\": \"return 1\"}", "image/png");
  EXPECT_EQ(media.status, 415) << media.describe();
  EXPECT_EQ(media.code(), "unsupported_media_type") << media.body;

  // A wrong method on an existing path: docs/http.md lists 405 method_not_allowed; cpp-httplib
  // routes by method, so 404 not_found is what a router without the path for that method says.
  for (auto r : {c.get("/v1/pools/default/eval"), c.put("/v1/pools/default/eval", json::object()),
                 c.del("/v1/pools/default/call")}) {
    EXPECT_TRUE(r.status == 405 || r.status == 404) << r.describe();
    EXPECT_TRUE(r.code() == "method_not_allowed" || r.code() == "not_found") << r.body;
  }
  auto no_route = c.get("/v1/nothing/here");
  EXPECT_EQ(no_route.status, 404) << no_route.describe();
  EXPECT_EQ(no_route.code(), "not_found") << no_route.body;

  // A timeout: 504, and the request ends near its deadline (not after the 5 s sleep).
  const auto t0 = std::chrono::steady_clock::now();
  auto to = c.eval("default", "import time\ntime.sleep(5)\nreturn 1", {{"timeout", 0.2}});
  const auto took = ms_since(t0);
  EXPECT_EQ(to.status, 504) << to.describe();
  EXPECT_EQ(to.code(), "timeout") << to.body;
  EXPECT_LT(took, scaled(3s).count()) << "the 0.2 s timeout took " << took << " ms";
  // The same with a duration string.
  auto to2 = c.eval("default", "import time\ntime.sleep(5)\nreturn 1", {{"timeout", "200ms"}});
  EXPECT_EQ(to2.status, 504) << to2.describe();

  // The pool keeps serving after all of it.
  auto after = c.eval("default", "return 'still here'");
  EXPECT_EQ(after.status, 200) << after.describe();
  EXPECT_EQ(after.doc, json({{"value", "still here"}}));
  std::cout << "[ timing ] 0.2 s timeout answered in " << took << " ms\n";
}

TEST_F(Basic, StatusPoolsAndMetricsDocuments) {
  ASSERT_TRUE(start(make_config(default_pool(2))));
  auto c = client();
  ASSERT_EQ(c.eval("default", "return 3").status, 200);

  json s = status();
  ASSERT_TRUE(s.is_object());
  EXPECT_EQ(s["pid"], daemon_pid());
  EXPECT_EQ(s["config"], config_path());
  EXPECT_EQ(s["ready"], true);
  EXPECT_EQ(s["reloads"], 0);
  json p = pool_status("default");
  ASSERT_TRUE(p.is_object()) << s.dump();
  EXPECT_EQ(p["workers"], 2);
  EXPECT_EQ(p["ready"], 2);
  EXPECT_EQ(p["tenant"], "main");
  EXPECT_EQ(p["spawn"], "cold");
  EXPECT_EQ(p["per_worker"].size(), 2u);
  EXPECT_GE(p["served"].get<int>(), 1);
  EXPECT_TRUE(s["gateway"].is_object());
  EXPECT_EQ(s["gateway"]["url"], "http://127.0.0.1:" + std::to_string(port_));

  auto pools = c.get("/v1/pools");
  EXPECT_EQ(pools.status, 200) << pools.describe();
  ASSERT_EQ(pools.doc["pools"].size(), 1u) << pools.body;
  EXPECT_EQ(pools.doc["pools"][0]["name"], "default");

  const std::string m = metrics();
  EXPECT_EQ(metric_value(m, R"(pyvisor_pool_workers{pool="default"})"), 2.0) << m;
  EXPECT_EQ(metric_value(m, R"(pyvisor_pool_ready_workers{pool="default"})"), 2.0) << m;
  EXPECT_EQ(metric_value(m, R"(pyvisor_requests_total{pool="default",endpoint="eval",code="ok"})"),
            1.0)
    << m;
  EXPECT_EQ(metric_value(m, R"(pyvisor_reloads_total{result="ok"})"), 0.0) << m;

  auto page = c.get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.header("Content-Type").find("text/html"), std::string::npos);
}

// A pool with spawn = "fork_server": its workers are forks of one template, a killed worker is
// forked again, the status says so, and the daemon's stop leaves no process (the fixture is a
// subreaper: a template or worker left behind would become our child).
TEST_F(Basic, AForkServerPoolServesAndRestartsFromItsTemplate) {
  ASSERT_TRUE(start(make_config(tenant_toml("main") +
                                pool_toml("forked", 2, "main", "spawn = \"fork_server\""))));
  auto c = client();
  auto parents = c.eval("forked", "import os\nreturn os.getppid()");
  ASSERT_EQ(parents.status, 200) << parents.describe();
  json p = pool_status("forked");
  EXPECT_EQ(p["spawn"], "fork_server");
  ASSERT_EQ(p["per_worker"].size(), 2u) << p.dump();
  auto parent_of = [](int pid) {
    std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
    std::string st{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    int ppid = -1;
    auto close = st.rfind(')');
    if (close != std::string::npos)
      std::sscanf(st.c_str() + close + 1, " %*c %d", &ppid);
    return ppid;
  };
  int w1 = p["per_worker"][0]["pid"], w2 = p["per_worker"][1]["pid"];
  int tmpl = parent_of(w1);
  EXPECT_EQ(parent_of(w2), tmpl) << "one template for the pool";
  EXPECT_EQ(parents.doc["value"], tmpl);
  ::kill(w1, SIGKILL);
  ASSERT_TRUE(pyvisor::test::eventually([&] {
    json q = pool_status("forked");
    return q["ready"] == 2 && q["restarts"] == 1;
  }));
  json q = pool_status("forked");
  for (auto& w : q["per_worker"])
    EXPECT_EQ(parent_of(w["pid"].get<int>()), tmpl) << q.dump();
  EXPECT_EQ(c.eval("forked", "return 7").doc, json({{"value", 7}}));
}

TEST_F(Basic, APortInUseIsRefusedBeforeAnyWorkerStarts) {
  ASSERT_TRUE(start(make_config(default_pool(1))));
  // A second daemon on the first one's port: no silent sharing of the port (SO_REUSEPORT), an
  // error naming the address, exit 1, and no Python started.
  const std::string second = path("second.toml");
  write_text(second, "[runtime]\nhttp_listen = \"127.0.0.1:" + std::to_string(port_) + "\"\n\n" +
                       default_pool(1));
  child_process p;
  ASSERT_EQ(p.start({"serve", second}, path("out2"), path("err2")), "");
  const auto st = p.wait_exit(scaled(30s));
  ASSERT_TRUE(st.has_value()) << "the second pyvisor serve kept running: " << p.err();
  EXPECT_EQ(*st, 1) << p.err();
  EXPECT_NE(p.err().find("cannot listen on 127.0.0.1:" + std::to_string(port_)), std::string::npos)
    << p.err();
  EXPECT_EQ(p.err().find("worker"), std::string::npos) << p.err();
  EXPECT_EQ(p.out().find("ready"), std::string::npos) << p.out();
  // The first one still serves.
  EXPECT_EQ(client().eval("default", "return 1").status, 200);
}

} // namespace
} // namespace pyvisor::daemon_test
