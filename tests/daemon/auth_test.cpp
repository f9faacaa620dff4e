// Bearer tokens (docs/http.md, "Authentication and TLS"): 401 without or with a wrong token,
// 403 outside the token's scopes, admin endpoints for '*' only, probes without a token; and a
// non-loopback listener without a tokens file is refused at start.
#include "daemon_fixture.hpp"

namespace pyvisor::daemon_test {
namespace {

const std::string admin = "admin-token-0123456789abcdef";
const std::string tenant_a = "tenant-a-token-0123456789";
const std::string pool_p2 = "pool-p2-token-0123456789";

class Auth : public DaemonTest {
protected:
  void start_with_tokens() {
    const std::string tokens = path("tokens");
    write_text(tokens, "# TOKEN SCOPES\n" + admin + "  *\n" + tenant_a + "  tenant:a\n" + pool_p2 +
                         "  pool:p2\n");
    admin_token_ = admin;
    ASSERT_TRUE(start(make_config(tenant_toml("a") + tenant_toml("b") + pool_toml("p1", 1, "a") +
                                    pool_toml("p2", 1, "b"),
                                  "", "tokens_file = " + json(tokens).dump() + "\n")));
  }
};

TEST_F(Auth, TokensScopesAndProbes) {
  start_with_tokens();
  if (HasFatalFailure())
    return;

  auto none = client().eval("p1", "return 1");
  EXPECT_EQ(none.status, 401) << none.describe();
  EXPECT_EQ(none.code(), "unauthorized") << none.body;
  EXPECT_EQ(none.header("WWW-Authenticate"), "Bearer");

  auto wrong = client("wrong-token-0123456789abc").eval("p1", "return 1");
  EXPECT_EQ(wrong.status, 401) << wrong.describe();
  EXPECT_EQ(wrong.header("WWW-Authenticate"), "Bearer");
  auto prefix = client(admin.substr(0, admin.size() - 1)).eval("p1", "return 1");
  EXPECT_EQ(prefix.status, 401) << "a prefix of a token is not the token: " << prefix.describe();

  auto a_own = client(tenant_a).eval("p1", "return 'a'");
  EXPECT_EQ(a_own.status, 200) << a_own.describe();
  EXPECT_EQ(a_own.doc, json({{"value", "a"}}));
  auto a_other = client(tenant_a).eval("p2", "return 'b'");
  EXPECT_EQ(a_other.status, 403) << a_other.describe();
  EXPECT_EQ(a_other.code(), "forbidden") << a_other.body;

  auto p2_own = client(pool_p2).eval("p2", "return 2");
  EXPECT_EQ(p2_own.status, 200) << p2_own.describe();
  auto p2_other = client(pool_p2).eval("p1", "return 2");
  EXPECT_EQ(p2_other.status, 403) << p2_other.describe();
  EXPECT_EQ(client(admin).eval("p1", "return 1").status, 200);
  EXPECT_EQ(client(admin).eval("p2", "return 1").status, 200);

  // Admin endpoints: '*' only.
  EXPECT_EQ(client(tenant_a).get("/v1/status").status, 403);
  EXPECT_EQ(client(pool_p2).get("/metrics").status, 403);
  auto st_none = client().get("/v1/status");
  EXPECT_EQ(st_none.status, 401) << st_none.describe();
  EXPECT_EQ(st_none.header("WWW-Authenticate"), "Bearer");
  EXPECT_EQ(client(admin).get("/v1/status").status, 200);
  EXPECT_EQ(client(admin).get("/metrics").status, 200);

  // /v1/pools lists what the token may use.
  auto listed = client(tenant_a).get("/v1/pools");
  EXPECT_EQ(listed.status, 200) << listed.describe();
  ASSERT_EQ(listed.doc["pools"].size(), 1u) << listed.body;
  EXPECT_EQ(listed.doc["pools"][0]["name"], "p1");
  EXPECT_EQ(client().get("/v1/pools").status, 401);

  // Sessions follow their pool's scopes.
  auto s = client(tenant_a).post("/v1/pools/p1/sessions", json::object());
  ASSERT_EQ(s.status, 201) << s.describe();
  const std::string id = s.doc["id"];
  EXPECT_EQ(client(pool_p2).post("/v1/sessions/" + id + "/eval", {{"code", "return 1"}}).status, 403);
  EXPECT_EQ(client().get("/v1/sessions/" + id).status, 401);
  EXPECT_EQ(client(tenant_a).post("/v1/sessions/" + id + "/eval", {{"code", "return 1"}}).status, 200);

  // Probes and the page need no token.
  EXPECT_EQ(client().get("/healthz").status, 200);
  EXPECT_EQ(client().get("/readyz").status, 200);
  EXPECT_EQ(client().get("/").status, 200);
}

TEST_F(Auth, UnknownPoolWithoutTokenIs401WithChallenge) {
  start_with_tokens();
  if (HasFatalFailure())
    return;
  // No probing for pool names without a token: 401, like a known pool, with the same
  // WWW-Authenticate challenge (RFC 6750 section 3: a 401 carries it).
  auto r = client().eval("nosuchpool", "return 1");
  EXPECT_EQ(r.status, 401) << r.describe();
  EXPECT_EQ(r.header("WWW-Authenticate"), "Bearer") << "the 401 of an unknown pool has no challenge";
  EXPECT_EQ(client(tenant_a).eval("nosuchpool", "return 1").status, 404);
}

TEST_F(Auth, NonLoopbackListenerWithoutTokensFileIsRefused) {
  write_text(config_path(), "[runtime]\nhttp_listen = \"0.0.0.0:0\"\n\n" + default_pool(1));
  child_process p;
  ASSERT_EQ(p.start({"serve", config_path()}, path("out"), path("err")), "");
  const auto st = p.wait_exit(scaled(30s));
  ASSERT_TRUE(st.has_value()) << "pyvisor serve kept running: " << p.err();
  EXPECT_EQ(*st, 1) << p.err();
  EXPECT_NE(p.err().find("tokens_file"), std::string::npos) << p.err();
  EXPECT_EQ(p.out().find("ready"), std::string::npos) << p.out();
  expect_no_leftovers({});
}

} // namespace
} // namespace pyvisor::daemon_test
