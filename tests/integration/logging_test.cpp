// Python's `logging` reaches the log sink as structured records (log_source::python_logging):
// level, logger, message, traceback, the request it was logged under, the creation time;
// level filtering, the opt-out, threads, pool workers, the stop, and a flood against a sink
// that does not keep up (bounded on both sides, still interruptible).
#include <gtest/gtest.h>

#include <condition_variable>
#include <fstream>
#include <future>
#include <set>
#include <thread>

#include "pyvisor/pool.hpp"
#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

/// A log_record with owned strings.
struct record {
  std::string label;
  int pid = 0;
  log_source source = log_source::runtime;
  std::string line;
  std::uint64_t request_id = 0;
  int level = 0;
  std::string level_name, logger, exception;
  std::chrono::system_clock::time_point created{};
};

long rss_kib(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return -1;
}

char proc_state(int pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  auto paren = s.rfind(')');
  return paren == std::string::npos || paren + 2 >= s.size() ? '?' : s[paren + 2];
}

class logging_test : public runtime_test {
protected:
  void SetUp() override {
    runtime_test::SetUp();
    // The fixture's sink keeps lines only: this one keeps every field of a record.
    rt_.reset();
    runtime_options o;
    o.log = [this](const log_record& r) { on_record(r); };
    rt_.emplace(std::move(o));
  }

  void TearDown() override {
    open_gate();
    runtime_test::TearDown();
  }

  void on_record(const log_record& r) {
    std::unique_lock<std::mutex> g{mu_};
    if (r.source == log_source::python_logging && gate_closed_) {
      ++blocked_;
      cv_.notify_all();
      // A sink that does not keep up (bounded: the test's own timeout would hit first).
      cv_.wait_for(g, std::chrono::seconds(60), [this] { return !gate_closed_; });
    }
    records_.push_back({std::string{r.label}, r.pid, r.source, std::string{r.line}, r.request_id,
                        r.level, std::string{r.level_name}, std::string{r.logger},
                        std::string{r.exception}, r.created});
  }

  std::vector<record> logged(const std::string& message = {}) {
    std::lock_guard<std::mutex> g{mu_};
    std::vector<record> out;
    for (auto& r : records_)
      if (r.source == log_source::python_logging && (message.empty() || r.line == message))
        out.push_back(r);
    return out;
  }

  /// The python_logging record with `message` (waits for it, bounded); fails the test if none.
  record wait_record(const std::string& message) {
    std::optional<record> found;
    eventually([&] {
      auto rs = logged(message);
      if (!rs.empty())
        found = rs.front();
      return found.has_value();
    });
    if (!found)
      throw std::runtime_error("no logging record '" + message + "'");
    return *found;
  }

  std::vector<record> all() {
    std::lock_guard<std::mutex> g{mu_};
    return records_;
  }

  bool has_line(log_source src, const std::string& line) {
    return eventually([&] {
      std::lock_guard<std::mutex> g{mu_};
      return std::any_of(records_.begin(), records_.end(),
                         [&](const record& r) { return r.source == src && r.line == line; });
    });
  }

  void close_gate() {
    std::lock_guard<std::mutex> g{mu_};
    gate_closed_ = true;
  }
  void open_gate() {
    std::lock_guard<std::mutex> g{mu_};
    gate_closed_ = false;
    cv_.notify_all();
  }
  bool wait_blocked() {
    std::unique_lock<std::mutex> g{mu_};
    return cv_.wait_for(g, std::chrono::seconds(20), [this] { return blocked_ > 0; });
  }

  /// The id of the request the code runs under, as the runner tags its output.
  static constexpr const char* current_request = "from pyvisor._stdio import REQUEST\n";

private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool gate_closed_ = false;
  int blocked_ = 0;
  std::vector<record> records_;
};

} // namespace

TEST_F(logging_test, a_warning_arrives_with_level_logger_message_and_its_request) {
  auto o = options();
  o.label = "logs";
  auto py = must_spawn(o);
  auto before = std::chrono::system_clock::now();
  auto id = py.eval(std::string{current_request} +
                    "import logging\nprint('printed')\nlogging.warning('hello %s', 'there')\n"
                    "return REQUEST.get()");
  ASSERT_TRUE(id) << id.error();
  auto r = wait_record("hello there");
  EXPECT_EQ(r.level, 30);
  EXPECT_EQ(r.level_name, "WARNING");
  EXPECT_EQ(r.logger, "root");
  EXPECT_EQ(r.exception, "");
  EXPECT_EQ(r.label, "logs");
  EXPECT_EQ(r.pid, py.os_pid());
  EXPECT_EQ(r.request_id, id->to<std::uint64_t>().value());
  EXPECT_NE(r.request_id, 0u);
  EXPECT_GE(r.created, before - std::chrono::seconds(2));
  EXPECT_LE(r.created, std::chrono::system_clock::now() + std::chrono::seconds(2));
  // the same request id as print() gets
  ASSERT_TRUE(has_line(log_source::python_stdout, "printed"));
  for (auto& l : all()) {
    if (l.source == log_source::python_stdout) {
      EXPECT_EQ(l.line, "printed");
      EXPECT_EQ(l.request_id, r.request_id);
    }
    // a record, not a stderr line
    if (l.source != log_source::python_logging) {
      EXPECT_EQ(l.line.find("hello there"), std::string::npos) << l.line;
    }
  }
}

TEST_F(logging_test, logger_names_exceptions_and_level_filtering) {
  auto py = must_spawn(options());
  auto r = py.eval(
    "import logging\nlog = logging.getLogger('app.db')\nlog.info('dropped by default')\n"
    "try:\n    {}['k']\nexcept KeyError:\n    log.exception('lookup failed')\n"
    "logging.getLogger('app').critical('bad')",
    {}, {.file = "job.py"});
  ASSERT_TRUE(r) << r.error();
  auto failed = wait_record("lookup failed");
  EXPECT_EQ(failed.level, 40);
  EXPECT_EQ(failed.level_name, "ERROR");
  EXPECT_EQ(failed.logger, "app.db");
  EXPECT_EQ(failed.exception.rfind("Traceback (most recent call last):\n", 0), 0u) << failed.exception;
  EXPECT_NE(failed.exception.find("File \"job.py\", line 5"), std::string::npos) << failed.exception;
  EXPECT_NE(failed.exception.find("KeyError: 'k'"), std::string::npos) << failed.exception;
  auto bad = wait_record("bad");
  EXPECT_EQ(bad.level, 50);
  EXPECT_EQ(bad.logger, "app");
  EXPECT_TRUE(logged("dropped by default").empty());
}

TEST_F(logging_test, an_init_script_setting_the_root_level_enables_info) {
  auto o = options();
  o.init_script.code = "import logging\nlogging.getLogger().setLevel(logging.INFO)";
  auto py = must_spawn(o);
  ASSERT_TRUE(py.eval("import logging\nlogging.getLogger('svc').info('started')\nlogging.debug('no')"));
  auto r = wait_record("started");
  EXPECT_EQ(r.level, 20);
  EXPECT_EQ(r.level_name, "INFO");
  EXPECT_EQ(r.logger, "svc");
  ASSERT_TRUE(py.eval("import logging\nlogging.warning('sync point')"));
  wait_record("sync point");
  EXPECT_TRUE(logged("no").empty());
}

TEST_F(logging_test, opting_out_leaves_records_to_python_as_stderr_lines) {
  auto o = options();
  o.forward_logging = false;
  auto py = must_spawn(o);
  auto n = py.eval("import logging\nn = len(logging.getLogger().handlers)\n"
                   "logging.warning('plain')\nreturn n");
  ASSERT_TRUE(n) << n.error();
  EXPECT_EQ(n->to<int>().value(), 0);
  EXPECT_TRUE(has_line(log_source::python_stderr, "WARNING:root:plain"));
  EXPECT_TRUE(logged().empty());
}

TEST_F(logging_test, records_from_threads_and_tasks) {
  auto py = must_spawn(options());
  auto id = py.eval(std::string{current_request} +
                    "import asyncio, logging, threading\n"
                    "t = threading.Thread(target=logging.error, args=('from a thread',))\n"
                    "t.start()\nt.join()\n"
                    "async def later():\n    logging.warning('from a task')\n"
                    "await asyncio.ensure_future(later())\nreturn REQUEST.get()");
  ASSERT_TRUE(id) << id.error();
  auto th = wait_record("from a thread");
  EXPECT_EQ(th.request_id, 0u);  // a thread does not inherit the request
  EXPECT_EQ(th.level, 40);
  EXPECT_EQ(wait_record("from a task").request_id, id->to<std::uint64_t>().value());
}

TEST_F(logging_test, records_logged_while_the_interpreter_stops_arrive) {
  auto py = must_spawn(options());
  ASSERT_TRUE(py.eval("import asyncio, logging\n"
                      "async def bg():\n    try:\n        await asyncio.sleep(60)\n"
                      "    finally:\n        logging.warning('stopping bg')\n"
                      "asyncio.ensure_future(bg())"));
  ASSERT_TRUE(py.stop());
  auto r = wait_record("stopping bg");
  EXPECT_EQ(r.level, 30);
  EXPECT_NE(r.request_id, 0u);  // the task kept the request that started it
}

TEST_F(logging_test, pool_workers_records_name_the_pool_and_worker_in_the_label) {
  pool_options o;
  o.name = "lp";
  o.workers = 2;
  o.worker = options();
  auto p = rt_->spawn_pool(std::move(o));
  ASSERT_TRUE(p) << p.error();
  std::set<int> pids;
  for (auto& w : p->stats().per_worker) {
    track_pid(w.pid);
    pids.insert(w.pid);
  }
  auto v = p->eval("import logging, os\nlogging.warning('from a worker')\nreturn os.getpid()");
  ASSERT_TRUE(v) << v.error();
  auto r = wait_record("from a worker");
  EXPECT_TRUE(r.label == "lp-w1" || r.label == "lp-w2") << r.label;
  EXPECT_EQ(r.pid, v->to<int>().value());
  EXPECT_NE(r.request_id, 0u);
}

TEST_F(logging_test, a_flood_against_a_stuck_sink_is_bounded_and_interruptible) {
  auto o = options();
  o.busy_limits.high_water = 1 << 20;
  o.busy_limits.low_water = 1 << 19;
  o.interrupt.grace = 100ms;
  o.interrupt.kill_after = 10s;
  auto py = must_spawn(o);
  int pid = py.os_pid();
  long rss_before = rss_kib(pid);
  close_gate();  // the first record blocks the host's I/O thread in the sink
  std::promise<expected<value>> done;
  auto result = done.get_future();
  py.eval_async("import logging\nwhile True:\n    logging.warning('x' * 1000)", {},
                {.timeout = 3s}, [&done](expected<value> r) { done.set_value(std::move(r)); });
  ASSERT_TRUE(wait_blocked());
  // The runner fills the pipe and its output queue up to the high watermark, then waits.
  int sleeping = 0;
  ASSERT_TRUE(eventually([&] {
    sleeping = proc_state(pid) == 'S' ? sleeping + 1 : 0;
    return sleeping >= 20;
  }, 20s));
  long rss_blocked = rss_kib(pid);
  std::this_thread::sleep_for(300ms);  // (it must stay put: nothing to await)
  EXPECT_EQ(proc_state(pid), 'S');
  long rss_later = rss_kib(pid);
  EXPECT_LT(std::max(rss_blocked, rss_later) - rss_before, 32 * 1024)
    << "runner RSS grew by " << (std::max(rss_blocked, rss_later) - rss_before) << " KiB";
  open_gate();
  // The deadline passed: the request is answered timeout and the loop is interrupted.
  ASSERT_EQ(result.wait_for(std::chrono::seconds(60)), std::future_status::ready);
  auto r = result.get();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout) << r.error();
  auto alive = py.eval("return 'alive'", {}, {.timeout = 30s});
  ASSERT_TRUE(alive) << alive.error();
  EXPECT_EQ(py.os_pid(), pid);  // interrupted, not killed
  EXPECT_GT(logged().size(), 100u);
}
