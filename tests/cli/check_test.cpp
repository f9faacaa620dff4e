// `pyvisor check FILE [--json]` through the real program: the effective tree of a good config
// (text and JSON), the problems of a bad one, and unreadable files.

#include <regex>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_test_util.hpp"

namespace {

using pyvisor::cli_test::describe;
using pyvisor::cli_test::lines_of;
using pyvisor::cli_test::pyvisor;
using pyvisor::cli_test::temp_dir;
using pyvisor::cli_test::write_file;

constexpr const char* good_config = R"(
[supervisor]
intensity = 3
period = "10s"

[tenants.web]
python = "python3"
[tenants.web.limits]
memory = "1GiB"
cpu_seconds = 60

[pools.api]
tenant = "web"
min = 2
max = 4
dispatch = "round_robin"
memory_budget = "1GiB"
default_timeout = "5s"
[pools.api.time_limits]
soft = "2s"
hard = "4s"
[pools.api.recycle]
max_requests = 100

[pools.jobs]
tenant = "web"
size = 3

[pools.loose]
size = 1

[supervisors.app]
strategy = "one_for_all"
children = ["api", "inner"]

[supervisors.inner]
strategy = "rest_for_one"
intensity = 5
children = ["jobs"]
)";

TEST(Check, PrintsTheEffectiveTree) {
  temp_dir dir;
  write_file(dir / "good.toml", good_config);
  const auto r = pyvisor({"check", dir / "good.toml"});
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.err, "");
  const std::string& t = r.out;
  EXPECT_NE(t.find("config " + (dir / "good.toml") + ": ok\n"), std::string::npos) << t;
  EXPECT_NE(t.find("tenant web\n  python: python3\n"), std::string::npos) << t;
  EXPECT_NE(t.find("  limits: memory 1GiB, cpu_seconds 60"), std::string::npos) << t;
  EXPECT_NE(t.find("  pool api: 2..4 workers (starts 2), dispatch round_robin, restart permanent\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("    timeouts: default 5s, init 1m, queue none\n"), std::string::npos) << t;
  EXPECT_NE(t.find("    time limits: soft 2s, hard 4s\n"), std::string::npos) << t;
  EXPECT_NE(t.find("    recycle: max_requests 100"), std::string::npos) << t;
  EXPECT_NE(t.find("    heartbeat: every 1s, timeout 5s\n"), std::string::npos) << t;
  // The budget split over the largest worker count; other pools: the tenant's memory limit.
  EXPECT_NE(t.find("    memory per worker: 256MiB (budget 1GiB)\n"), std::string::npos) << t;
  EXPECT_NE(t.find("    workers: api-w1 api-w2 api-w3 api-w4\n"), std::string::npos) << t;
  EXPECT_NE(t.find("  pool jobs: 3 workers"), std::string::npos) << t;
  EXPECT_NE(t.find("    memory per worker: 1GiB\n    workers: jobs-w1 jobs-w2 jobs-w3\n"),
            std::string::npos)
      << t;
  EXPECT_NE(t.find("(no tenant: host python, no isolation)\n"), std::string::npos) << t;
  EXPECT_NE(t.find("  pool loose: 1 worker,"), std::string::npos) << t;
  EXPECT_NE(t.find("supervision:\n"
                   "  root (supervisor one_for_one, intensity 3 in 10s)\n"
                   "    loose (pool)\n"
                   "    app (supervisor one_for_all, intensity 3 in 10s)\n"
                   "      api (pool)\n"
                   "      inner (supervisor rest_for_one, intensity 5 in 10s)\n"
                   "        jobs (pool)\n"),
            std::string::npos)
      << t;
}

TEST(Check, JsonHasTheSameTree) {
  temp_dir dir;
  write_file(dir / "good.toml", good_config);
  const auto r = pyvisor({"check", "--json", dir / "good.toml"});
  ASSERT_EQ(r.status, 0) << describe(r);
  const auto doc = nlohmann::json::parse(r.out);
  ASSERT_EQ(doc["ok"], true);
  const auto& tree = doc["tree"];
  ASSERT_EQ(tree["tenants"].size(), 2u);  // web, and the pools without a tenant
  const auto& web = tree["tenants"][0];
  EXPECT_EQ(web["name"], "web");
  EXPECT_EQ(web["python"], "python3");
  EXPECT_TRUE(web["venv"].is_null());
  EXPECT_EQ(web["limits"]["memory"], 1u << 30);
  EXPECT_EQ(web["sandbox"]["kind"], "none");
  ASSERT_EQ(web["pools"].size(), 2u);
  const auto& api = web["pools"][0];
  EXPECT_EQ(api["name"], "api");
  EXPECT_EQ(api["size"]["min"], 2);
  EXPECT_EQ(api["size"]["max"], 4);
  EXPECT_EQ(api["dispatch"], "round_robin");
  EXPECT_EQ(api["timeouts"]["default"], "5s");
  EXPECT_EQ(api["time_limits"]["hard"], "4s");
  EXPECT_EQ(api["heartbeat"]["interval"], "1s");
  EXPECT_EQ(api["memory_per_worker"], 256u << 20);
  EXPECT_EQ(api["workers"], nlohmann::json({"api-w1", "api-w2", "api-w3", "api-w4"}));
  EXPECT_TRUE(tree["tenants"][1]["name"].is_null());
  EXPECT_EQ(tree["tenants"][1]["pools"][0]["name"], "loose");
  const auto& root = tree["supervision"];
  EXPECT_EQ(root["name"], "root");
  EXPECT_EQ(root["intensity"], 3);
  ASSERT_EQ(root["children"].size(), 2u);
  EXPECT_EQ(root["children"][0]["name"], "loose");
  EXPECT_EQ(root["children"][0]["kind"], "pool");
  const auto& app = root["children"][1];
  EXPECT_EQ(app["strategy"], "one_for_all");
  EXPECT_EQ(app["children"][1]["name"], "inner");
  EXPECT_EQ(app["children"][1]["intensity"], 5);
  EXPECT_EQ(app["children"][1]["children"][0]["name"], "jobs");
}

TEST(Check, ProblemsExitOne) {
  temp_dir dir;
  const std::string file = dir / "bad.toml";
  write_file(file,
             "[pools.web]\n"
             "wokers = 2\n"
             "size = \"many\"\n"
             "[supervisors.a]\n"
             "children = [\"nope\"]\n");
  auto r = pyvisor({"check", file});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_EQ(r.out, "");
  const auto lines = lines_of(r.err);
  ASSERT_GE(lines.size(), 3u) << r.err;
  const std::regex shape(std::regex_replace(file, std::regex(R"([.^$|()\[\]{}*+?\\])"), R"(\$&)") +
                         R"(:[0-9]+:[0-9]+: .+)");
  for (const auto& line : lines) EXPECT_TRUE(std::regex_match(line, shape)) << line;
  EXPECT_NE(r.err.find(file + ":2:1: "), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("wokers"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("nope"), std::string::npos) << r.err;

  r = pyvisor({"check", "--json", file});
  EXPECT_EQ(r.status, 1) << describe(r);
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["ok"], false);
  ASSERT_EQ(doc["problems"].size(), lines.size());
  const auto& first = doc["problems"][0];
  EXPECT_EQ(first["file"], file);
  EXPECT_EQ(first["line"], 2);
  EXPECT_EQ(first["column"], 1);
  EXPECT_EQ(first["path"], "pools.web.wokers");
  EXPECT_NE(first["message"].get<std::string>().find("wokers"), std::string::npos);
}

TEST(Check, UnreadableOrInvalidTomlExitsOne) {
  temp_dir dir;
  auto r = pyvisor({"check", dir / "missing.toml"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_NE(r.err.find("missing.toml"), std::string::npos) << r.err;
  write_file(dir / "syntax.toml", "x = [\n");
  r = pyvisor({"check", dir / "syntax.toml"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(r.err.starts_with(dir / "syntax.toml:1:")) << r.err;
}

} // namespace
