// The pyvisor program as a client of a real daemon (`pyvisor serve` started by the fixture):
// `pyvisor status` (text, --json, not ready: exit 3) and `pyvisor eval --pool` (value, errors,
// --raw, --var, -f, stdin, SystemExit, --timeout, --key), and the usage errors of a remote eval.

#include <set>
#include <string>
#include <vector>

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
using pyvisor::cli_test::pyvisor;
using pyvisor::cli_test::write_file;

using RemoteStatus = DaemonCliTest;

TEST_F(RemoteStatus, TextTreeAndJsonDocument) {
  ASSERT_TRUE(start(daemon_config(default_pools(2))));
  auto r = client({"status"});
  ASSERT_EQ(r.status, 0) << describe(r);
  const auto lines = lines_of(r.out);
  ASSERT_GE(lines.size(), 5u) << r.out;
  EXPECT_TRUE(contains(lines[0], "daemon " + url() + ": pyvisor " PYVISOR_VERSION ", pid "))
      << lines[0];
  EXPECT_EQ(lines[1], "root (supervisor)");
  EXPECT_TRUE(contains(lines[2], "  default (pool, tenant main): 2/2 ready, 0 in flight, "))
      << lines[2];
  int workers = 0;
  for (const std::string& line : lines) {
    if (line.starts_with("    w")) {
      ++workers;
      EXPECT_TRUE(contains(line, ": pid ") && contains(line, ", ready, 0 restarts, last exit none, ") &&
                  line.ends_with(" MiB"))
          << line;
    }
  }
  EXPECT_EQ(workers, 2) << r.out;
  EXPECT_EQ(lines.back(), "ready");

  r = client({"status", "--json"});
  ASSERT_EQ(r.status, 0) << describe(r);
  ASSERT_EQ(lines_of(r.out).size(), 1u) << r.out;
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["ready"], true);
  ASSERT_EQ(doc["pools"].size(), 1u);
  EXPECT_EQ(doc["pools"][0]["name"], "default");
  EXPECT_EQ(doc["pools"][0]["tenant"], "main");
  EXPECT_EQ(doc["pools"][0]["per_worker"].size(), 2u);
  EXPECT_GT(doc["pools"][0]["per_worker"][0]["pid"].get<int>(), 0);
}

TEST_F(RemoteStatus, NotReadyIsExitThree) {
  // min_ready 0: the daemon is up while its only worker still runs its init script.
  ASSERT_TRUE(start(daemon_config(
      "[tenants.main]\npython = \"/usr/bin/python3\"\n\n[pools.slow]\ntenant = \"main\"\n"
      "size = 1\nmin_ready = 0\ninit_timeout = \"15m\"\n"
      "init_script = \"import time; time.sleep(600)\"\n")));
  auto r = client({"status"});
  EXPECT_EQ(r.status, 3) << describe(r);
  EXPECT_TRUE(contains(r.out, "  slow (pool, tenant main): 0/1 ready")) << r.out;
  EXPECT_TRUE(contains(r.out, "\nnot ready: no ready worker in slow\n")) << r.out;
  r = client({"status", "--json"});
  EXPECT_EQ(r.status, 3) << describe(r);
  EXPECT_EQ(nlohmann::json::parse(r.out)["ready"], false);
}

using RemoteEval = DaemonCliTest;

TEST_F(RemoteEval, PrintsLikeTheLocalEval) {
  ASSERT_TRUE(start(daemon_config(default_pools(2))));
  // The value, rendered losslessly, one line.
  auto r = client({"eval", "--pool", "default", "return 6 * 7, b'x', {1: 'a', '1': 'b'}, 2**70"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out,
            "{\"$tuple\":[42,{\"$bytes\":\"eA==\"},{\"$map\":[[1,\"a\"],[\"1\",\"b\"]]},"
            "{\"$int\":\"1180591620717411303424\"}]}\n");
  // An exception: exit 1, the error line and the traceback on stderr, nothing on stdout.
  r = client({"eval", "--pool", "default", "x = 1\n1 / 0"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_EQ(r.out, "");
  EXPECT_TRUE(contains(r.err, "error: python_exception: division by zero\nTraceback (most recent "
                              "call last):\n  File \"<string>\", line 2, in <module>\n"))
      << r.err;
  EXPECT_TRUE(contains(r.err, "ZeroDivisionError: division by zero\n")) << r.err;
  // --json: the error object on stdout.
  r = client({"eval", "--json", "--pool", "default", "1 / 0"});
  EXPECT_EQ(r.status, 1) << describe(r);
  const auto err = nlohmann::json::parse(r.out);
  EXPECT_EQ(err["error"]["code"], "python_exception");
  EXPECT_EQ(err["error"]["type"], "ZeroDivisionError");
  EXPECT_FALSE(err["error"]["traceback"].empty());
  // --raw.
  r = client({"eval", "--raw", "--pool", "default", "return 'a\\nb'"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "a\nb\n");
  r = client({"eval", "--raw", "--pool", "default", "return [1]"});
  EXPECT_EQ(r.out, "[1]\n") << describe(r);
  // --var, tags included.
  r = client({"eval", "--pool", "default", "--var", "xs=[3, 1, 2]", "--var",
              "t={\"$tuple\": [1, {\"$bytes\": \"AA==\"}]}",
              "return sorted(xs), type(t).__name__, t[1]"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "{\"$tuple\":[[1,2,3],\"tuple\",{\"$bytes\":\"AA==\"}]}\n");
  // A bad --var is a usage error before anything is sent.
  r = client({"eval", "--pool", "default", "--var", "x=[1,", "return x"});
  EXPECT_EQ(r.status, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--var x: invalid JSON: ")) << r.err;
  // -f FILE (tracebacks name it) and '-' (stdin).
  write_file(dir() / "job.py", "y = 20\nreturn y + 22\n");
  r = client({"eval", "--pool", "default", "-f", dir() / "job.py"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "42\n");
  write_file(dir() / "bad.py", "y = 1\nraise ValueError('nope')\n");
  r = client({"eval", "--pool", "default", "-f", dir() / "bad.py"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "File \"" + (dir() / "bad.py") + "\", line 2")) << r.err;
  r = client({"eval", "--pool", "default", "-"}, "return 'from stdin'");
  EXPECT_EQ(r.out, "\"from stdin\"\n") << describe(r);
  // SystemExit as local eval: N, message (status 1), success.
  r = client({"eval", "--pool", "default", "raise SystemExit(5)"});
  EXPECT_EQ(r.status, 5) << describe(r);
  r = client({"eval", "--pool", "default", "raise SystemExit('bye')"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_EQ(r.err, "bye\n");
  r = client({"eval", "--pool", "default", "import sys\nsys.exit()"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "null\n");
}

TEST_F(RemoteEval, TimeoutUnknownPoolAndKey) {
  ASSERT_TRUE(start(daemon_config(
      default_pools(1) + "\n[pools.keyed]\ntenant = \"main\"\nsize = 2\n"
                         "dispatch = \"key_affinity\"\n")));
  auto r = client({"eval", "--pool", "default", "--timeout", "300ms",
                   "import asyncio\nawait asyncio.sleep(30)"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "error: timeout: ")) << r.err;
  r = client({"eval", "--pool", "nope", "return 1"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "error: not_found: ") && contains(r.err, "nope")) << r.err;
  // The same key reaches the same worker.
  std::set<std::string> pids;
  for (int i = 0; i < 4; ++i) {
    r = client({"eval", "--pool", "keyed", "--key", "user-7", "import os\nreturn os.getpid()"});
    EXPECT_EQ(r.status, 0) << describe(r);
    pids.insert(r.out);
  }
  EXPECT_EQ(pids.size(), 1u);
}

TEST(RemoteEvalUsage, RemoteOptionsAreChecked) {
  // None of these reaches a daemon (none runs at this URL).
  const std::string url = "http://127.0.0.1:1";
  auto r = pyvisor({"eval", "--connect", url, "return 1"});
  EXPECT_EQ(r.status, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "a remote eval needs --pool NAME or --session ID")) << r.err;
  r = pyvisor({"eval", "--pool", "default", "--python", "python3", "return 1"});
  EXPECT_EQ(r.status, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--python applies to a local eval only")) << r.err;
  r = pyvisor({"eval", "--pool", "a", "--session", "b", "return 1"});
  EXPECT_EQ(r.status, 2) << describe(r);
  r = pyvisor({"eval", "--session", "s-1", "--key", "k", "return 1"});
  EXPECT_EQ(r.status, 2) << describe(r);
  r = pyvisor({"eval", "--connect", "ftp://host", "--pool", "default", "return 1"});
  EXPECT_EQ(r.status, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--connect: 'ftp://host' is not an http:// or https:// URL")) << r.err;
  r = pyvisor({"eval", "--connect", url + "/v1", "--pool", "default", "return 1"});
  EXPECT_EQ(r.status, 2) << describe(r);
  r = pyvisor({"eval", "--pool", "a/b", "return 1"});
  EXPECT_EQ(r.status, 2) << describe(r);
  // Plain eval stays local even with PYVISOR_URL set.
  r = pyvisor::cli_test::run_process(
      "/usr/bin/env", {"PYVISOR_URL=" + url, pyvisor::cli_test::program, "eval", "return 1"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "1\n");
}

} // namespace
