// Sessions over HTTP (docs/http.md, "Sessions"): made with 201 and an id, state kept between
// evals, DELETE 204 then 410, unknown ids 404, the idle TTL, a worker's crash (non-durable: 410
// "lost"; durable: survives with its state), and max_sessions (429).
#include "daemon_fixture.hpp"

namespace pyvisor::daemon_test {
namespace {

class Sessions : public DaemonTest {
protected:
  /// Makes a session; its id ("" with a failure recorded otherwise).
  std::string make_session(gateway_client& c, json body = json::object()) {
    auto r = c.post("/v1/pools/default/sessions", body);
    EXPECT_EQ(r.status, 201) << r.describe();
    if (r.status != 201 || !r.doc.contains("id"))
      return {};
    EXPECT_EQ(r.header("Location"), "/v1/sessions/" + r.doc["id"].get<std::string>());
    return r.doc["id"].get<std::string>();
  }

  reply session_eval(gateway_client& c, const std::string& id, const std::string& code) {
    return c.post("/v1/sessions/" + id + "/eval", {{"code", code}});
  }

  /// The pid of the worker the session is pinned to.
  int session_pid(gateway_client& c, const std::string& id) {
    auto r = session_eval(c, id, "import os\nreturn os.getpid()");
    EXPECT_EQ(r.status, 200) << r.describe();
    return r.status == 200 ? r.doc["value"].get<int>() : -1;
  }

  /// Waits until the pool has `n` ready workers and `old_pid` is none of them.
  bool replaced(int old_pid, int n) {
    return eventually([&] {
      json p = pool_status("default");
      if (!p.is_object() || p["ready"] != n)
        return false;
      for (auto& w : p["per_worker"])
        if (w["pid"] == old_pid || w["state"] != "ready")
          return false;
      return true;
    });
  }
};

TEST_F(Sessions, StateDeleteUnknownAndTtlBounds) {
  ASSERT_TRUE(start(make_config(default_pool(2))));
  auto c = client();
  auto made = c.post("/v1/pools/default/sessions", {{"init", "n = 0"}});
  ASSERT_EQ(made.status, 201) << made.describe();
  const std::string id = made.doc["id"];
  EXPECT_EQ(made.doc["pool"], "default");
  EXPECT_EQ(made.doc["durable"], false);
  EXPECT_GE(id.size(), 32u) << "ids carry 128 random bits";

  for (int want = 1; want <= 3; ++want) {
    auto r = session_eval(c, id, "n += 1\nreturn n");
    EXPECT_EQ(r.status, 200) << r.describe();
    EXPECT_EQ(r.doc, json({{"value", want}}));
  }
  auto call = c.post("/v1/sessions/" + id + "/call", {{"name", "str"}, {"args", {7}}});
  EXPECT_EQ(call.status, 200) << call.describe();
  EXPECT_EQ(call.doc, json({{"value", "7"}}));

  auto got = c.get("/v1/sessions/" + id);
  EXPECT_EQ(got.status, 200) << got.describe();
  EXPECT_EQ(got.doc["id"], id);

  auto patched = c.patch("/v1/sessions/" + id, {{"idle_ttl", "10m"}});
  EXPECT_EQ(patched.status, 200) << patched.describe();
  EXPECT_EQ(patched.doc["idle_ttl"], 600.0) << patched.body;

  // Another session does not see this one's names.
  const std::string other = make_session(c);
  auto iso = session_eval(c, other, "return 'n' in globals()");
  EXPECT_EQ(iso.doc, json({{"value", false}})) << iso.describe();

  auto del = c.del("/v1/sessions/" + id);
  EXPECT_EQ(del.status, 204) << del.describe();
  auto gone = session_eval(c, id, "return n");
  EXPECT_EQ(gone.status, 410) << gone.describe();
  EXPECT_EQ(gone.code(), "session_gone") << gone.body;
  EXPECT_NE(gone.message().find("deleted"), std::string::npos) << gone.body;
  EXPECT_EQ(c.del("/v1/sessions/" + id).status, 410);

  auto unknown = session_eval(c, "s-00000000000000000000000000000000", "return 1");
  EXPECT_EQ(unknown.status, 404) << unknown.describe();
  EXPECT_EQ(unknown.code(), "not_found") << unknown.body;

  // A session's init that raises makes no session: 422 with the error.
  auto bad_init = c.post("/v1/pools/default/sessions", {{"init", "raise ValueError('no')"}});
  EXPECT_EQ(bad_init.status, 422) << bad_init.describe();
  EXPECT_EQ(bad_init.code(), "python_exception") << bad_init.body;
}

TEST_F(Sessions, IdleTtlExpires) {
  ASSERT_TRUE(start(make_config(default_pool(1))));
  auto c = client();
  const auto ttl = scaled(300ms);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string id =
    make_session(c, {{"idle_ttl", std::to_string(ttl.count()) + "ms"}, {"init", "x = 1"}});
  ASSERT_FALSE(id.empty());
  auto fresh = c.get("/v1/sessions/" + id);
  if (ms_since(t0) < ttl.count() / 2) {  // not yet expired (unless this machine is very slow)
    EXPECT_EQ(fresh.status, 200) << fresh.describe();
  }
  reply last;
  // GET does not touch the idle clock: it turns 410 once the TTL passed.
  ASSERT_TRUE(eventually(
    [&] {
      last = c.get("/v1/sessions/" + id);
      return last.status == 410;
    },
    10s))
    << last.describe();
  const auto took = ms_since(t0);
  EXPECT_GE(took, ttl.count()) << "expired before its idle_ttl";
  EXPECT_EQ(last.code(), "session_gone");
  EXPECT_NE(last.message().find("idle"), std::string::npos) << last.body;
  // And it stays gone, with its reason.
  auto again = session_eval(c, id, "return x");
  EXPECT_EQ(again.status, 410) << again.describe();
  EXPECT_NE(again.message().find("idle"), std::string::npos) << again.body;
  EXPECT_EQ(metric_value(metrics(), "pyvisor_sessions_expired_total"), 1.0);
  std::cout << "[ timing ] " << ttl.count() << " ms idle_ttl session answered 410 after " << took << " ms\n";
}

TEST_F(Sessions, WorkerKilledNonDurableIsLostDurableSurvives) {
  ASSERT_TRUE(start(make_config(default_pool(1))));
  auto c = client();
  const std::string plain = make_session(c, {{"init", "n = 10"}});
  const std::string durable = make_session(c, {{"init", "n = 100"}, {"durable", true}});
  ASSERT_FALSE(plain.empty());
  ASSERT_FALSE(durable.empty());
  EXPECT_EQ(session_eval(c, durable, "n += 1\nreturn n").doc, json({{"value", 101}}));
  EXPECT_EQ(session_eval(c, plain, "n += 1\nreturn n").doc, json({{"value", 11}}));
  const int pid = session_pid(c, plain);
  ASSERT_EQ(session_pid(c, durable), pid) << "one worker: both sessions on it";
  note_pid(pid);

  kill_worker(pid);
  ASSERT_TRUE(replaced(pid, 1)) << pool_status("default").dump();

  auto lost = session_eval(c, plain, "return n");
  EXPECT_EQ(lost.status, 410) << lost.describe();
  EXPECT_EQ(lost.code(), "session_gone") << lost.body;
  EXPECT_NE(lost.message().find("lost"), std::string::npos) << lost.body;
  // Its id stays gone.
  EXPECT_EQ(c.get("/v1/sessions/" + plain).status, 410);

  // The durable one was replayed on the new worker (init, then the eval that succeeded).
  auto kept = session_eval(c, durable, "n += 1\nreturn n");
  EXPECT_EQ(kept.status, 200) << kept.describe();
  EXPECT_EQ(kept.doc, json({{"value", 102}})) << kept.body;
  EXPECT_NE(session_pid(c, durable), pid);
}

TEST_F(Sessions, MaxSessionsIs429) {
  ASSERT_TRUE(start(make_config(default_pool(1), "", "max_sessions = 2\n")));
  auto c = client();
  const std::string a = make_session(c);
  const std::string b = make_session(c);
  ASSERT_FALSE(a.empty());
  ASSERT_FALSE(b.empty());
  auto third = c.post("/v1/pools/default/sessions", json::object());
  EXPECT_EQ(third.status, 429) << third.describe();
  EXPECT_EQ(third.code(), "too_many_sessions") << third.body;
  // Ending one makes room again.
  EXPECT_EQ(c.del("/v1/sessions/" + a).status, 204);
  EXPECT_FALSE(make_session(c).empty());
}

} // namespace
} // namespace pyvisor::daemon_test
