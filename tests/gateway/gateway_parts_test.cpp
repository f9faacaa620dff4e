// The gateway's pieces without processes or sockets: tokens, sessions' clocks, request bodies,
// status codes, the metrics text, the reload units, listen addresses.
#include <gtest/gtest.h>

#include <thread>

#include "gateway/deploy_units.hpp"
#include "gateway/http_errors.hpp"
#include "gateway/metrics.hpp"
#include "gateway/request_body.hpp"
#include "gateway/session_table.hpp"
#include "gateway/token_auth.hpp"
#include "pyvisor/config.hpp"

namespace pyvisor::gateway {
namespace {

using namespace std::chrono_literals;

constexpr const char* tokens_text = R"(# admin
admin-token-0123456789 *
tenant-a-token-0123456 tenant:a
pool-p2-token-01234567 pool:p2 pool:p3

)";

TEST(Tokens, ScopesDecideWhatATokenMayUse) {
  auto t = token_table::parse(tokens_text, "tokens");
  ASSERT_TRUE(t) << t.error().message;
  using v = token_table::verdict;
  EXPECT_EQ(t->check_pool("", "p1", "a"), v::unauthenticated);
  EXPECT_EQ(t->check_pool("Bearer nope-nope-nope-nope", "p1", "a"), v::unauthenticated);
  EXPECT_EQ(t->check_pool("Basic admin-token-0123456789", "p1", "a"), v::unauthenticated);
  EXPECT_EQ(t->check_pool("Bearer admin-token-0123456789", "p1", "a"), v::allowed);
  EXPECT_EQ(t->check_pool("Bearer tenant-a-token-0123456", "p1", "a"), v::allowed);
  EXPECT_EQ(t->check_pool("Bearer tenant-a-token-0123456", "p1", "b"), v::forbidden);
  EXPECT_EQ(t->check_pool("Bearer tenant-a-token-0123456", "p1", ""), v::forbidden);
  EXPECT_EQ(t->check_pool("Bearer pool-p2-token-01234567", "p2", "b"), v::allowed);
  EXPECT_EQ(t->check_pool("Bearer pool-p2-token-01234567", "p3", ""), v::allowed);
  EXPECT_EQ(t->check_pool("Bearer pool-p2-token-01234567", "p1", "a"), v::forbidden);
  EXPECT_EQ(t->check_admin("Bearer admin-token-0123456789"), v::allowed);
  EXPECT_EQ(t->check_admin("Bearer tenant-a-token-0123456"), v::forbidden);
  EXPECT_EQ(t->check_admin(""), v::unauthenticated);
  // A prefix or extension of a token is not the token.
  EXPECT_EQ(t->check_admin("Bearer admin-token-012345678"), v::unauthenticated);
  EXPECT_EQ(t->check_admin("Bearer admin-token-01234567890"), v::unauthenticated);
}

TEST(Tokens, NoTableAllowsEverything) {
  token_table t;
  EXPECT_FALSE(t.enabled());
  EXPECT_EQ(t.check_pool("", "p", "t"), token_table::verdict::allowed);
  EXPECT_EQ(t.check_admin(""), token_table::verdict::allowed);
}

TEST(Tokens, MalformedFilesNameTheLine) {
  auto short_token = token_table::parse("abc *\n", "f");
  ASSERT_FALSE(short_token);
  EXPECT_NE(short_token.error().message.find("f:1: a token has at least 16"), std::string::npos);
  auto no_scope = token_table::parse("# c\nabcdefghijklmnopq\n", "f");
  ASSERT_FALSE(no_scope);
  EXPECT_NE(no_scope.error().message.find("f:2: a token needs at least one scope"),
            std::string::npos);
  auto bad_scope = token_table::parse("abcdefghijklmnopq team:x\n", "f");
  ASSERT_FALSE(bad_scope);
  EXPECT_NE(bad_scope.error().message.find("unknown scope 'team:x'"), std::string::npos);
  auto twice = token_table::parse("abcdefghijklmnopq *\nabcdefghijklmnopq pool:x\n", "f");
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message.find("f:2: this token is listed twice"), std::string::npos);
  auto empty = token_table::parse("# nothing\n\n", "f");
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().message.find("no tokens"), std::string::npos);
  EXPECT_FALSE(token_table::load("/nonexistent/tokens"));
}

TEST(Sessions, IdleTtlAndLifetimeEndSessionsWithAReason) {
  session_table t{8};
  auto s = t.add("p", "", false, std::nullopt, 1h, 2h);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->id.size(), 34u);  // "s-" + 32 hex digits
  EXPECT_EQ(t.size(), 1u);
  auto found = t.use(s->id);
  EXPECT_TRUE(found.found);
  EXPECT_EQ(found.idle_ttl, 1h);
  // Nothing expires before its time; the sweep an hour later ends it as idle.
  EXPECT_EQ(t.sweep(session_clock::now() + 30min), 0u);
  EXPECT_EQ(t.sweep(session_clock::now() + 61min), 1u);
  auto gone = t.use(s->id);
  EXPECT_FALSE(gone.found);
  EXPECT_TRUE(gone.gone);
  EXPECT_NE(gone.reason.find("idle"), std::string::npos);
  EXPECT_EQ(t.expired_total(), 1u);

  auto s2 = t.add("p", "", false, std::nullopt, 3h, 2h);
  EXPECT_EQ(t.sweep(session_clock::now() + 121min), 1u);
  EXPECT_NE(t.use(s2->id).reason.find("max_lifetime"), std::string::npos);

  auto unknown = t.use("s-00");
  EXPECT_FALSE(unknown.found);
  EXPECT_FALSE(unknown.gone);
}

TEST(Sessions, ExtendEndAndCap) {
  session_table t{2};
  auto a = t.add("p", "", false, std::nullopt, 1min, 1h);
  auto b = t.add("q", "", false, std::nullopt, 1min, 1h);
  ASSERT_TRUE(a && b);
  EXPECT_FALSE(t.add("p", "", false, std::nullopt, 1min, 1h));  // max_sessions
  EXPECT_TRUE(t.extend(a->id, 10min, 0ms));
  EXPECT_EQ(t.use(a->id).idle_ttl, 10min);
  EXPECT_EQ(t.sweep(session_clock::now() + 2min), 1u);  // b only
  EXPECT_TRUE(t.use(a->id).found);
  EXPECT_EQ(t.per_pool().at("p"), 1u);
  EXPECT_TRUE(t.end(a->id, "deleted"));
  EXPECT_FALSE(t.end(a->id, "deleted"));
  EXPECT_EQ(t.use(a->id).reason, "deleted");
  auto c = t.add("r", "", false, std::nullopt, 1min, 1h);
  EXPECT_EQ(t.end_pool("r", "the pool was replaced"), 1u);
  EXPECT_EQ(t.use(c->id).reason, "the pool was replaced");
  EXPECT_EQ(t.size(), 0u);
}

TEST(Sessions, IdsAreUnique) {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i)
    ids.insert(new_session_id());
  EXPECT_EQ(ids.size(), 1000u);
}

TEST(Bodies, EvalBodies) {
  auto doc = parse_body(R"({"code": "return x", "vars": {"x": 1, "b": {"$bytes": "AAE="}},
                            "key": "k", "timeout": 2.5})", false);
  ASSERT_TRUE(doc) << doc.error().message;
  auto b = parse_call_body(*doc, true);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->code, "return x");
  ASSERT_EQ(b->vars.size(), 2u);
  EXPECT_EQ(b->vars[0].name, "x");
  EXPECT_EQ(b->vars[0].value.bytes(), std::string("\x01", 1));
  EXPECT_EQ(b->vars[1].value.bytes(), std::string("\xc4\x02\x00\x01", 4));  // bin 8: 00 01
  EXPECT_EQ(b->key, "k");
  EXPECT_EQ(b->timeout, 2500ms);
  EXPECT_EQ(b->file, "<http>");
  auto t = parse_call_body(*parse_body(R"({"code": "1", "timeout": "250ms"})", false), true);
  ASSERT_TRUE(t);
  EXPECT_EQ(t->timeout, 250ms);
}

TEST(Bodies, CallBodies) {
  auto b = parse_call_body(
    *parse_body(R"({"name": "math.hypot", "args": [3, 4], "kwargs": {"z": null}})", false), false);
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_EQ(b->name, "math.hypot");
  ASSERT_EQ(b->args.size(), 2u);
  ASSERT_EQ(b->vars.size(), 1u);
}

TEST(Bodies, MalformedBodiesSayWhatIsWrong) {
  const auto error_of = [](std::string_view text, bool eval) -> std::string {
    auto doc = parse_body(text, false);
    if (!doc)
      return doc.error().message;
    auto b = parse_call_body(*doc, eval);
    return b ? std::string{"ok"} : b.error().message;
  };
  EXPECT_NE(error_of("", true).find("empty"), std::string::npos);
  EXPECT_NE(error_of("{bad", true).find("malformed JSON"), std::string::npos);
  EXPECT_NE(error_of("[1]", true).find("must be a JSON object"), std::string::npos);
  EXPECT_EQ(error_of("{}", true), "'code' is required");
  EXPECT_EQ(error_of(R"({"code": 1})", true), "'code' must be a string");
  EXPECT_NE(error_of(R"({"code": "1", "cod": 1})", true).find("unknown field 'cod'"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"code": "1", "vars": [1]})", true).find("'vars' must be an object"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"code": "1", "timeout": -1})", true).find("positive"), std::string::npos);
  EXPECT_NE(error_of(R"({"code": "1", "timeout": "5 s"})", true).find("timeout"),
            std::string::npos);
  EXPECT_NE(error_of(R"({"code": "1", "timeout": true})", true).find("timeout"), std::string::npos);
  EXPECT_EQ(error_of(R"({"args": []})", false), "'name' is required");
  EXPECT_EQ(error_of(R"({"name": "f", "args": {}})", false), "'args' must be an array");
  EXPECT_NE(error_of(R"({"code": "1", "vars": {"b": {"$bytes": 5}}})", true).find("vars.b"),
            std::string::npos);
  auto empty_ok = parse_body("  ", true);
  ASSERT_TRUE(empty_ok);
  EXPECT_TRUE(empty_ok->empty());
}

TEST(Bodies, SessionBodies) {
  auto b = parse_session_body(*parse_body(
    R"({"durable": true, "init": "n = 0", "idle_ttl": "2m", "max_lifetime": 7200})", false));
  ASSERT_TRUE(b) << b.error().message;
  EXPECT_TRUE(b->durable);
  EXPECT_EQ(b->init, "n = 0");
  EXPECT_EQ(b->idle_ttl, 2min);
  EXPECT_EQ(b->max_lifetime, 2h);
  EXPECT_FALSE(parse_session_body(*parse_body(R"({"durable": 1})", false)));
  EXPECT_FALSE(parse_session_body(*parse_body(R"({"ttl": "1s"})", false)));
}

TEST(Status, EveryErrcHasADocumentedStatus) {
  EXPECT_EQ(http_status_of(errc::python_exception), 200);
  EXPECT_EQ(http_status_of(errc::syntax_error), 200);
  EXPECT_EQ(http_status_of(errc::timeout), 504);
  EXPECT_EQ(http_status_of(errc::overloaded), 429);
  EXPECT_EQ(http_status_of(errc::pool_unavailable), 503);
  EXPECT_EQ(http_status_of(errc::interpreter_exited), 502);
  EXPECT_EQ(http_status_of(errc::env_lost), 410);
  EXPECT_EQ(http_status_of(errc::invalid_argument), 400);
  // No errc is a 500: that is the gateway's own failure.
  for (int c = 1; c <= static_cast<int>(errc::pool_unavailable); ++c)
    EXPECT_NE(http_status_of(static_cast<errc>(c)), 500) << to_string(static_cast<errc>(c));
}

TEST(Status, ErrorDocumentsCarryTypeAndTraceback) {
  error e{errc::python_exception, "division by zero", "ZeroDivisionError", {"Traceback\n", "x\n"}};
  EXPECT_EQ(dump_json(error_document(e)),
            R"({"error":{"code":"python_exception","type":"ZeroDivisionError","message":"division by zero","traceback":["Traceback\n","x\n"]}})");
  EXPECT_EQ(dump_json(gateway_error_document("not_found", "no pool 'x'")),
            R"({"error":{"code":"not_found","type":null,"message":"no pool 'x'","traceback":[]}})");
}

TEST(Metrics, PrometheusText) {
  gateway_metrics m;
  m.observe("p", "eval", "ok", 300us);
  m.observe("p", "eval", "ok", 20ms);
  m.observe("p", "eval", "timeout", 11s);
  m.response(200);
  m.response(504);
  scrape_input in;
  pool_stats st;
  st.workers = 2;
  st.ready = 1;
  st.restarts = 3;
  worker_stats w;
  w.id = "w1";
  w.rss_bytes = 1234;
  st.per_worker.push_back(w);
  in.pools.push_back({"p", "t", st});
  in.sessions_open["p"] = 4;
  const std::string text = m.render(in);
  const auto has = [&](const std::string& line) {
    return text.find(line + "\n") != std::string::npos;
  };
  EXPECT_TRUE(has(R"(pyvisor_requests_total{pool="p",endpoint="eval",code="ok"} 2)")) << text;
  EXPECT_TRUE(has(R"(pyvisor_requests_total{pool="p",endpoint="eval",code="timeout"} 1)"));
  EXPECT_TRUE(has(R"(pyvisor_request_duration_seconds_bucket{pool="p",le="0.0005"} 1)"));
  EXPECT_TRUE(has(R"(pyvisor_request_duration_seconds_bucket{pool="p",le="0.025"} 2)"));
  EXPECT_TRUE(has(R"(pyvisor_request_duration_seconds_bucket{pool="p",le="10"} 2)"));
  EXPECT_TRUE(has(R"(pyvisor_request_duration_seconds_bucket{pool="p",le="+Inf"} 3)"));
  EXPECT_TRUE(has(R"(pyvisor_request_duration_seconds_count{pool="p"} 3)"));
  EXPECT_TRUE(has(R"(pyvisor_http_responses_total{status="504"} 1)"));
  EXPECT_TRUE(has(R"(pyvisor_pool_ready_workers{pool="p"} 1)"));
  EXPECT_TRUE(has(R"(pyvisor_worker_restarts_total{pool="p"} 3)"));
  EXPECT_TRUE(has(R"(pyvisor_worker_rss_bytes{pool="p",worker="w1"} 1234)"));
  EXPECT_TRUE(has(R"(pyvisor_sessions_open{pool="p"} 4)"));
  EXPECT_TRUE(has("# TYPE pyvisor_request_duration_seconds histogram"));
  EXPECT_EQ(label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
}

runtime_spec spec_of(const std::string& toml) {
  auto r = load_config_string(toml, "t.toml", "/");
  EXPECT_TRUE(r.ok()) << (r.problems.empty() ? "" : r.problems[0].to_string());
  return r.spec ? *r.spec : runtime_spec{};
}

TEST(Units, EachRootChildIsAUnitWithItsTenants) {
  const std::string base = R"(
[tenants.a]
python = "/usr/bin/python3"
[tenants.b]
python = "/usr/bin/python3"
[pools.p1]
tenant = "a"
[pools.p2]
tenant = "b"
[pools.p3]
[supervisors.s]
children = ["p2", "p3"]
)";
  auto units = split_units(spec_of(base));
  ASSERT_EQ(units.size(), 2u);
  EXPECT_EQ(units[0].name, "p1");
  EXPECT_EQ(units[0].pools, std::vector<std::string>{"p1"});
  ASSERT_EQ(units[0].spec.tenants.size(), 1u);
  EXPECT_EQ(units[0].spec.tenants[0].name, "a");
  EXPECT_EQ(units[1].name, "s");
  EXPECT_EQ(units[1].pools, (std::vector<std::string>{"p2", "p3"}));
  EXPECT_TRUE(validate(units[1].spec).empty());

  // A change in tenant b touches unit s only; runtime settings touch none.
  std::string changed = base;
  changed.replace(changed.find("[tenants.b]\npython = \"/usr/bin/python3\""),
                  std::string("[tenants.b]\npython = \"/usr/bin/python3\"").size(),
                  "[tenants.b]\npython = \"/usr/bin/python3\"\nenvironment.set = {X = \"1\"}");
  auto next = split_units(spec_of("[runtime]\nlog_level = \"debug\"\n" + changed));
  ASSERT_EQ(next.size(), 2u);
  EXPECT_EQ(next[0].fingerprint, units[0].fingerprint);
  EXPECT_NE(next[1].fingerprint, units[1].fingerprint);
}

TEST(Units, ADependentRootIsOneUnit) {
  auto units = split_units(spec_of(R"(
[supervisor]
strategy = "one_for_all"
[pools.p1]
[pools.p2]
)"));
  ASSERT_EQ(units.size(), 1u);
  EXPECT_EQ(units[0].name, "*");
  EXPECT_EQ(units[0].pools, (std::vector<std::string>{"p1", "p2"}));
}

TEST(Listen, Addresses) {
  auto a = parse_listen_address("127.0.0.1:4270");
  ASSERT_TRUE(a);
  EXPECT_EQ(a->host, "127.0.0.1");
  EXPECT_EQ(a->port, 4270);
  EXPECT_TRUE(a->loopback());
  auto v6 = parse_listen_address("[::1]:0");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->host, "::1");
  EXPECT_TRUE(v6->loopback());
  EXPECT_TRUE(parse_listen_address("localhost:80")->loopback());
  EXPECT_TRUE(parse_listen_address("127.8.9.1:80")->loopback());
  EXPECT_FALSE(parse_listen_address("0.0.0.0:80")->loopback());
  EXPECT_FALSE(parse_listen_address("[::]:80")->loopback());
  EXPECT_FALSE(parse_listen_address("10.0.0.1:80")->loopback());
  for (const char* bad : {"", "4270", ":4270", "host:", "host:70000", "host:-1", "::1:80",
                          "[::1]80", "[zz]:80", "a b:80", "h:80x"})
    EXPECT_FALSE(parse_listen_address(bad)) << bad;
  EXPECT_NE(parse_listen_address("::1:80").error().message.find("brackets"), std::string::npos);
}

TEST(Listen, ConfigRules) {
  auto r = load_config_string("[runtime]\nhttp_listen = \"0.0.0.0:4270\"\n", "t.toml", "/");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.problems[0].to_string().find("requires authentication: set gateway.tokens_file"),
            std::string::npos);
  auto tls = load_config_string("[gateway]\ntls_cert = \"/c.pem\"\n", "t.toml", "/");
  ASSERT_FALSE(tls.ok());
  EXPECT_NE(tls.problems[0].to_string().find("tls_cert and tls_key go together"),
            std::string::npos);
  auto ok = load_config_string(
    "[runtime]\nhttp_listen = \"0.0.0.0:4270\"\n[gateway]\ntokens_file = \"tokens\"\n", "t.toml",
    "/etc");
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok.spec->gateway.tokens_file, "/etc/tokens");
  EXPECT_FALSE(load_config_string("[gateway]\nmax_connections = 0\n", "t.toml", "/").ok());
  EXPECT_FALSE(load_config_string("[gateway]\nread_timeout = \"forever\"\n", "t.toml", "/").ok() &&
               false);
  EXPECT_FALSE(load_config_string("[runtime]\nhttp_listen = \"nope\"\n", "t.toml", "/").ok());
}

} // namespace
} // namespace pyvisor::gateway
