// The `logging` notification (docs/protocol.md, "Logging records"): the golden frames the
// runner's tests pin down decode, through the session's parser, to the fields the log sink
// gets; malformed payloads are refused or defaulted, never trusted.
#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

#include "protocol/frame_reader.hpp"
#include "protocol/message.hpp"
#include "protocol/python_log.hpp"
#include "pyvisor/log_record.hpp"

#include <unistd.h>

using namespace pyvisor;
using namespace pyvisor::protocol;

namespace {

message golden(const std::string& name) {
  std::ifstream f(std::string{PYVISOR_TEST_DATA_DIR} + "/golden/" + name + ".bin",
                  std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  auto bytes = ss.str();
  frame_reader r{64 << 20};
  r.feed(bytes);
  auto fr = r.next();
  EXPECT_EQ(fr.st, frame_reader::status::frame) << name;
  auto decoded = decode(fr.body, limits{});
  EXPECT_TRUE(std::holds_alternative<message>(decoded)) << name;
  return std::get<message>(std::move(decoded));
}

using seconds_d = std::chrono::duration<double>;

double epoch_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<seconds_d>(t.time_since_epoch()).count();
}

} // namespace

TEST(python_log, golden_record_with_exception) {
  auto m = golden("proto_logging");
  ASSERT_EQ(m.op, "logging");
  auto r = parse_python_log(m.payload);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->request_id, 8u);
  EXPECT_EQ(r->level, 40);
  EXPECT_EQ(r->level_name, "ERROR");
  EXPECT_EQ(r->logger, "app.db");
  EXPECT_EQ(r->message, "query h\xc3\xa9 failed");
  EXPECT_EQ(r->exception, "Traceback (most recent call last):\n  File \"cell.py\", line 7, in "
                          "<module>\nZeroDivisionError: division by zero");
  EXPECT_DOUBLE_EQ(epoch_seconds(r->created), 1700000000.25);
}

TEST(python_log, golden_record_without_request_or_exception) {
  auto m = golden("proto_logging_no_request");
  auto r = parse_python_log(m.payload);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->request_id, 0u);
  EXPECT_EQ(r->level, 30);
  EXPECT_EQ(r->level_name, "WARNING");
  EXPECT_EQ(r->logger, "root");
  EXPECT_EQ(r->message, "");
  EXPECT_EQ(r->exception, "");
  EXPECT_DOUBLE_EQ(epoch_seconds(r->created), 1700000000.0);
}

TEST(python_log, malformed_payloads) {
  auto z = std::make_shared<msgpack::zone>();
  // not a map, or no string message: refused
  EXPECT_FALSE(parse_python_log(msgpack::object(5, *z)));
  std::map<std::string, int> no_message{{"level", 30}};
  EXPECT_FALSE(parse_python_log(msgpack::object(no_message, *z)));
  // wrong types default; out-of-range numbers are clamped or ignored
  std::map<std::string, msgpack::object> odd{
    {"message", msgpack::object("m", *z)},
    {"level", msgpack::object(-5, *z)},
    {"level_name", msgpack::object(3, *z)},
    {"id", msgpack::object(-1, *z)},
    {"created", msgpack::object(1e300, *z)},
  };
  auto r = parse_python_log(msgpack::object(odd, *z));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->message, "m");
  EXPECT_EQ(r->level, -5);
  EXPECT_EQ(r->level_name, "");
  EXPECT_EQ(r->request_id, 0u);
  EXPECT_EQ(r->created, std::chrono::system_clock::time_point{});
  std::map<std::string, msgpack::object> big{
    {"message", msgpack::object("", *z)},
    {"level", msgpack::object(std::uint64_t{1} << 40, *z)},
  };
  auto r2 = parse_python_log(msgpack::object(big, *z));
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->level, std::numeric_limits<int>::max());
}

TEST(python_log, stderr_sink_prints_level_logger_and_the_traceback) {
  // What stderr_log_sink writes, read back through a pipe in place of fd 2.
  int fds[2];
  ASSERT_EQ(::pipe(fds), 0);
  std::fflush(stderr);
  int saved = ::dup(2);
  ::dup2(fds[1], 2);
  log_record r{"w", 42, log_source::python_logging, "boom", 7};
  r.level = 40;
  r.level_name = "ERROR";
  r.logger = "app.db";
  r.exception = "Traceback (most recent call last):\nKeyError: 'k'";
  stderr_log_sink(r);
  log_record plain{"w", 42, log_source::python_stdout, "hi", 0};
  stderr_log_sink(plain);
  log_record unnamed{"w", 42, log_source::python_logging, "m", 0};
  unnamed.level = 25;
  stderr_log_sink(unnamed);
  std::fflush(stderr);
  ::dup2(saved, 2);
  ::close(saved);
  ::close(fds[1]);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;)
    got.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  EXPECT_EQ(got,
            "[w 42 logging ERROR app.db #7] boom\nTraceback (most recent call last):\nKeyError: 'k'\n"
            "[w 42 stdout] hi\n"
            "[w 42 logging 25] m\n");
  EXPECT_EQ(to_string(log_source::python_logging), "logging");
}
