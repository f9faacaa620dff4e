// log_format = "json" (docs/http.md, "Log"): every line the daemon writes to stderr is one JSON
// object with "ts" and "level"; a killed worker is logged as a worker_exited object with its
// pool, worker and signal.
#include <sstream>

#include "daemon_fixture.hpp"

namespace pyvisor::daemon_test {
namespace {

class JsonLog : public DaemonTest {
protected:
  /// The stderr's lines parsed; a failure for every line that is not a JSON object with ts and
  /// level.
  std::vector<json> parsed_lines() {
    std::vector<json> out;
    std::istringstream in(stderr_text());
    int n = 0;
    for (std::string line; std::getline(in, line);) {
      ++n;
      json j = json::parse(line, nullptr, false);
      EXPECT_TRUE(j.is_object()) << "stderr line " << n << " is not a JSON object: " << line;
      if (!j.is_object())
        continue;
      EXPECT_TRUE(j.contains("ts") && j["ts"].is_string()) << line;
      EXPECT_TRUE(j.contains("level") && j["level"].is_string()) << line;
      out.push_back(std::move(j));
    }
    return out;
  }

  bool has_worker_exit(int pid, json* found = nullptr) {
    std::istringstream in(stderr_text());
    for (std::string line; std::getline(in, line);) {
      json j = json::parse(line, nullptr, false);
      if (j.is_object() && j.value("event", "") == "worker_exited" && j.value("pid", 0) == pid) {
        if (found)
          *found = j;
        return true;
      }
    }
    return false;
  }
};

TEST_F(JsonLog, EveryStderrLineIsAJsonObjectAndAWorkerKillIsLogged) {
  ASSERT_TRUE(start(make_config(default_pool(2), "log_format = \"json\"\nlog_level = \"debug\"\n")));
  auto c = client();
  // Python's own output goes through the log too.
  auto r = c.eval("default", "import sys\nprint('to stdout')\nprint('to \"stderr\"', file=sys.stderr)\nreturn 1");
  EXPECT_EQ(r.status, 200) << r.describe();
  EXPECT_EQ(c.eval("default", "return 1 / 0").status, 200);

  const auto pids = worker_pids("default");
  ASSERT_EQ(pids.size(), 2u);
  kill_worker(pids[0]);
  json ev;
  ASSERT_TRUE(eventually([&] { return has_worker_exit(pids[0], &ev); })) << tail(stderr_text());
  EXPECT_EQ(ev["pool"], "default") << ev.dump();
  EXPECT_TRUE(ev["worker"].is_string() && !ev["worker"].get<std::string>().empty()) << ev.dump();
  EXPECT_EQ(ev["signal"], 9) << ev.dump();
  EXPECT_EQ(ev["level"], "warning") << ev.dump();
  // The restart completes before the stop, so its events are in the log too.
  ASSERT_TRUE(eventually([&] {
    json p = pool_status("default");
    return p.is_object() && p["ready"] == 2 && p["restarts"] == 1;
  })) << pool_status("default").dump();
  worker_pids("default");

  EXPECT_EQ(stop_daemon(), 0);
  const auto lines = parsed_lines();
  EXPECT_GE(lines.size(), 5u);
  bool ready = false, stopped = false, restarting = false;
  for (auto& j : lines) {
    const std::string e = j.value("event", "");
    ready = ready || e == "ready";
    stopped = stopped || e == "stopped";
    restarting = restarting || (e == "worker_restarting" && j.contains("delay_ms"));
  }
  EXPECT_TRUE(ready);
  EXPECT_TRUE(stopped);
  EXPECT_TRUE(restarting);
  // Nothing but the ready line on stdout.
  EXPECT_EQ(stdout_text(), ready_line_);
}

} // namespace
} // namespace pyvisor::daemon_test
