// `pyvisor eval` through the real program: results, errors (text and --json), exit statuses,
// --var, stdin, timeouts; and the usage errors of every command (exit 2).

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_test_util.hpp"

namespace {

using pyvisor::cli_test::describe;
using pyvisor::cli_test::pyvisor;

TEST(Eval, PrintsTheResultAsOneJsonLine) {
  auto r = pyvisor({"eval", "return 6 * 7"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "42\n");
  r = pyvisor({"eval", "x = 1"});
  EXPECT_EQ(r.out, "null\n") << describe(r);
  // Python types that JSON lacks keep their documented renderings (docs/json.md); the
  // result of `return a, b` is a tuple.
  r = pyvisor({"eval", R"(return (1, "a"), b"\x00\xff", 2**200, float("nan"), {1: 2}, 1.0, {"k": {3}})"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out,
            R"({"$tuple":[{"$tuple":[1,"a"]},{"$bytes":"AP8="},{"$int":"1606938044258990275541962092341162602522202993782792835301376"},{"$float":"nan"},{"$map":[[1,2]]},1.0,{"k":{"$set":[3]}}]})"
            "\n");
}

TEST(Eval, VarsInitScriptAndStdin) {
  auto r = pyvisor({"eval", "--var", "xs=[3, 1, 2]", "--var=d={\"b\": 1, \"a\": null}",
                    "return [sorted(xs), len(xs), list(d)]"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "[[1,2,3],3,[\"b\",\"a\"]]\n");
  // Options after CODE, the init script sees the vars, a repeated single option: the last wins.
  r = pyvisor({"eval", "return math.floor(y)", "--init-script", "import math; y = v * 2",
               "--var", "v=1.25", "--python", "no-such-python", "--python", "python3"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "2\n");
  r = pyvisor({"eval", "-"}, "import sys\nreturn sys.argv is not None\n");
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "true\n");
  // "--" ends the options: code that starts with '-'.
  r = pyvisor({"eval", "--", "-1"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "null\n");
}

TEST(Eval, ErrorsAsTextAndAsJson) {
  auto r = pyvisor({"eval", "1/0"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_EQ(r.out, "");
  EXPECT_NE(r.err.find("error: python_exception: division by zero\nTraceback (most recent call last):\n"),
            std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("ZeroDivisionError: division by zero"), std::string::npos) << r.err;

  r = pyvisor({"eval", "--json", "1/0"});
  EXPECT_EQ(r.status, 1) << describe(r);
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["error"]["code"], "python_exception");
  EXPECT_EQ(doc["error"]["type"], "ZeroDivisionError");
  EXPECT_EQ(doc["error"]["message"], "division by zero");
  ASSERT_TRUE(doc["error"]["traceback"].is_array());
  EXPECT_EQ(doc["error"]["traceback"].back(), "ZeroDivisionError: division by zero\n");

  r = pyvisor({"eval", "--json", "--python", "/nonexistent/python", "return 1"});
  EXPECT_EQ(r.status, 1) << describe(r);
  const auto spawn = nlohmann::json::parse(r.out);
  EXPECT_EQ(spawn["error"]["code"], "spawn_failed");
  EXPECT_TRUE(spawn["error"]["type"].is_null());
  EXPECT_EQ(spawn["error"]["traceback"], nlohmann::json::array());
}

TEST(Eval, TimeoutIsAnError) {
  auto r = pyvisor({"eval", "--timeout", "300ms", "import asyncio\nawait asyncio.sleep(30)"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_NE(r.err.find("error: timeout: "), std::string::npos) << r.err;
  r = pyvisor({"eval", "--timeout=forever", "return 1"});
  EXPECT_EQ(r.status, 0) << describe(r);
}

TEST(Eval, ASignalStopsTheInterpreterAndExits128PlusN) {
  pyvisor::cli_test::temp_dir dir;
  const std::string fifo = dir / "started";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  // The code tells the test it runs (through the FIFO), then blocks.
  auto p = pyvisor::cli_test::start_process(
      pyvisor::cli_test::program,
      {"eval", "--json", "--var", "fifo=\"" + fifo + "\"",
       "with open(fifo, 'w') as f: f.write('x')\nimport time\ntime.sleep(60)"});
  ASSERT_GT(p.pid, 0) << p.error;
  const int fd = ::open(fifo.c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(fd, 0);
  pollfd pfd{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&pfd, 1, 60000), 1) << "the code did not start";
  ::close(fd);
  ASSERT_EQ(::kill(p.pid, SIGINT), 0);
  const auto r = pyvisor::cli_test::finish_process(p);
  EXPECT_EQ(r.status, 130) << describe(r);
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["error"]["code"], "cancelled");
  EXPECT_EQ(doc["error"]["message"], "interrupted by SIGINT");
}

struct usage_case {
  std::vector<std::string> args;
  std::string message;  ///< part of the first stderr line
};

TEST(Usage, ErrorsExitTwoWithAMessage) {
  const std::vector<usage_case> cases = {
      {{}, "A subcommand is required"},
      {{"frobnicate"}, "unknown command 'frobnicate'"},
      {{"eval"}, "CODE is required (or -f FILE)"},
      {{"eval", "--bogus", "return 1"}, "--bogus"},
      {{"eval", "a", "b"}, "b"},
      {{"eval", "--json=yes", "return 1"}, "json"},
      {{"eval", "--var", "x", "return 1"}, "--var needs NAME=JSON, got 'x'"},
      {{"eval", "--var", "1x=2", "return 1"}, "'1x' is not a valid Python variable name"},
      {{"eval", "--var", "class=2", "return 1"}, "'class' is not a valid Python variable name"},
      {{"eval", "--var", "x=[1,]", "return 1"}, "--var x: invalid JSON: "},
      {{"eval", "--var", "x=NaN", "return 1"}, "--var x: invalid JSON: "},
      {{"eval", "--var", R"(x={"$int": "12x"})", "return 1"},
       R"(--var x: "$int": expected decimal digits with an optional '-' and no leading zeros, got "12x")"},
      {{"eval", "--var", R"(x=[{"$bytes": 5}])", "return 1"},
       R"(--var x: "$bytes": expected a base64 string, got a number (at /0))"},
      {{"eval", "--var", R"(x={"$nope": 1})", "return 1"}, R"(--var x: unknown tag "$nope")"},
      {{"eval", "--var", "__pyvisor_path__=1", "return 1"}, "the name __pyvisor_path__ is reserved"},
      {{"eval", "-f", "/nonexistent/code.py"}, "-f: cannot read '/nonexistent/code.py': No such file"},
      {{"eval", "-f", "/", "return 1"}, "CODE and -f FILE are mutually exclusive"},
      {{"eval", "--file", ""}, "-f needs a non-empty FILE"},
      {{"eval", "--cwd", "/nonexistent", "return 1"}, "--cwd: '/nonexistent' is not a directory"},
      {{"eval", "--path", "/nonexistent", "return 1"}, "--path: '/nonexistent' does not exist"},
      {{"eval", "--raw=yes", "return 1"}, "raw"},
      {{"eval", "--version"}, "--version"},
      {{"eval", "--var", "x=1", "--var", "x=2", "return 1"}, "--var x given more than once"},
      {{"eval", "--var", "x=" + std::string(126, '[') + std::string(126, ']'), "return 1"},
       "nesting deeper than 125 levels at byte 125"},
      {{"eval", "--timeout", "0ms", "return 1"}, "--timeout: invalid DURATION '0ms'"},
      {{"eval", "--timeout", "5", "return 1"}, "--timeout: invalid DURATION '5'"},
      {{"eval", "--python", "", "return 1"}, "--python needs a non-empty EXE"},
      {{"eval", "return '\xff'"}, "CODE is not valid UTF-8"},
      {{"check"}, "FILE is required"},
      {{"check", "a.toml", "b.toml"}, "b.toml"},
      {{"env"}, "A subcommand is required"},
      {{"env", "sync"}, "CONFIG is required"},
  };
  for (const usage_case& c : cases) {
    const auto r = pyvisor(c.args);
    std::string joined;
    for (const auto& a : c.args) joined += " " + a;
    EXPECT_EQ(r.status, 2) << "pyvisor" << joined << "\n" << describe(r);
    EXPECT_EQ(r.out, "") << "pyvisor" << joined;
    EXPECT_TRUE(r.err.starts_with("pyvisor: ")) << "pyvisor" << joined << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << "pyvisor" << joined << "\n" << r.err;
    EXPECT_NE(r.err.find("--help' for usage."), std::string::npos) << r.err;
  }
  // A 125-deep --var is fine (126 is not, above).
  const auto r = pyvisor({"eval", "--var", "x=" + std::string(125, '[') + std::string(125, ']'),
                          "d = 0\nwhile isinstance(x, list) and x:\n  x = x[0]; d += 1\nreturn d"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "124\n");
}

TEST(Usage, HelpExitsZero) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"--help"}, {"eval", "--help"}, {"check", "-h"},
        {"env", "sync", "--help"}}) {
    const auto r = pyvisor(args);
    EXPECT_EQ(r.status, 0) << describe(r);
    EXPECT_NE(r.out.find("Usage: pyvisor"), std::string::npos) << r.out;
  }
  const std::string help = pyvisor({"eval", "--help"}).out;
  for (const char* option : {"--var NAME=JSON", "-f,--file FILE", "--cwd DIR", "--path DIR", "--raw",
                             "SystemExit(N)"}) {
    EXPECT_NE(help.find(option), std::string::npos) << option << "\n" << help;
  }
  EXPECT_NE(pyvisor({"--help"}).out.find("check"), std::string::npos);
}

} // namespace
