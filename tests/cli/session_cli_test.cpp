// `pyvisor session new|eval|show|rm` and `pyvisor eval --session` against a real daemon.

#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_daemon.hpp"

namespace {

using pyvisor::cli_test::DaemonCliTest;
using pyvisor::cli_test::contains;
using pyvisor::cli_test::daemon_config;
using pyvisor::cli_test::default_pools;
using pyvisor::cli_test::describe;
using pyvisor::cli_test::lines_of;

using SessionCli = DaemonCliTest;

TEST_F(SessionCli, NewEvalShowRemove) {
  ASSERT_TRUE(start(daemon_config(default_pools(2))));
  auto r = client({"session", "new", "--pool", "default", "--init", "n = 0", "--var", "step=5"});
  ASSERT_EQ(r.status, 0) << describe(r);
  ASSERT_EQ(lines_of(r.out).size(), 1u) << r.out;
  const std::string id = lines_of(r.out)[0];
  EXPECT_TRUE(id.starts_with("s-")) << id;

  // Names stay from one eval to the next, through both spellings.
  r = client({"session", "eval", id, "n += step\nreturn n"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "5\n");
  r = client({"eval", "--session", id, "n += step\nreturn n"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "10\n");
  r = client({"session", "eval", id, "--var", "k=2", "-"}, "return n * k");
  EXPECT_EQ(r.out, "20\n") << describe(r);
  r = client({"session", "eval", "--raw", id, "return str(n)"});
  EXPECT_EQ(r.out, "10\n") << describe(r);
  r = client({"session", "eval", id, "raise KeyError('k')"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "error: python_exception: ") && contains(r.err, "KeyError")) << r.err;

  r = client({"session", "show", id});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_TRUE(contains(r.out, "id: " + id + "\npool: default\ndurable: false\n")) << r.out;
  EXPECT_TRUE(contains(r.out, "\nidle_ttl: 300.0s\n")) << r.out;
  r = client({"session", "show", "--json", id});
  EXPECT_EQ(r.status, 0) << describe(r);
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["id"], id);
  EXPECT_EQ(doc["pool"], "default");

  r = client({"session", "rm", id});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "");
  // Ended: every use says so.
  r = client({"session", "eval", id, "return n"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "error: session_gone: session '" + id + "' ended: deleted")) << r.err;
  r = client({"eval", "--json", "--session", id, "return n"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_EQ(nlohmann::json::parse(r.out)["error"]["code"], "session_gone");
  r = client({"session", "rm", id});
  EXPECT_EQ(r.status, 1) << describe(r);
  r = client({"session", "show", "s-0123"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "error: not_found: no session 's-0123'")) << r.err;
}

TEST_F(SessionCli, OptionsJsonAndFailedInit) {
  ASSERT_TRUE(start(daemon_config(default_pools(1))));
  auto r = client({"session", "new", "--pool", "default", "--durable", "--idle-ttl", "90s",
                   "--max-lifetime", "10m", "--json"});
  ASSERT_EQ(r.status, 0) << describe(r);
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["durable"], true);
  EXPECT_EQ(doc["idle_ttl"], 90.0);
  EXPECT_EQ(doc["max_lifetime"], 600.0);
  EXPECT_TRUE(doc["id"].get<std::string>().starts_with("s-"));
  // The init code raises: no session, its error and traceback.
  r = client({"session", "new", "--pool", "default", "--init", "1 / 0"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(contains(r.err, "error: python_exception: division by zero\nTraceback")) << r.err;
  // Usage errors.
  r = client({"session", "new", "--pool", "default", "--idle-ttl", "5x"});
  EXPECT_EQ(r.status, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--idle-ttl: invalid DURATION '5x'")) << r.err;
  r = client({"session", "new"});
  EXPECT_EQ(r.status, 2) << describe(r);
  r = client({"session"});
  EXPECT_EQ(r.status, 2) << describe(r);
  r = client({"session", "new", "--pool", "nope"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "error: not_found: ")) << r.err;
}

} // namespace
