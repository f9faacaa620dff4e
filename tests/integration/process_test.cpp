// What reaches the child (environment, cwd, launcher, transport) and what comes back from it
// (log lines, hostile frames).
#include <unistd.h>

#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {
class process_test : public runtime_test {};

bool has_line(const std::vector<captured_line>& logs, const std::string& label, log_source src,
              const std::string& text) {
  for (auto& l : logs)
    if (l.label == label && l.source == src && l.line == text)
      return true;
  return false;
}
} // namespace

TEST_F(process_test, environment_and_cwd_reach_the_child) {
  auto o = options();
  o.environment = {{"PYVISOR_TEST_VAR", "hello"}, {"HOME", "/overridden"}};
  o.cwd = "/tmp";
  auto py = must_spawn(o);
  auto r = py.eval("import os\nreturn [os.getenv('PYVISOR_TEST_VAR'), os.getenv('HOME'), os.getcwd()]");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::vector<std::string>>(),
            (std::vector<std::string>{"hello", "/overridden", "/tmp"}));
}

TEST_F(process_test, inherit_policies) {
  ::setenv("PYVISOR_INHERITED", "yes", 1);
  auto none = options();
  none.inherit_environment = false;
  none.environment = {{"ONLY", "1"}};
  auto a = must_spawn(none);
  auto env_a = a.eval("import os\nreturn sorted(k for k in os.environ if k in ('ONLY', 'PYVISOR_INHERITED', 'PATH'))");
  ASSERT_TRUE(env_a) << env_a.error().to_string();
  EXPECT_EQ(env_a->as<std::vector<std::string>>(), std::vector<std::string>{"ONLY"});
  auto some = options();
  some.inherit_only = {"PYVISOR_INHERITED"};
  auto b = must_spawn(some);
  auto env_b = b.eval("import os\nreturn [os.getenv('PYVISOR_INHERITED'), os.getenv('PATH')]");
  ASSERT_TRUE(env_b) << env_b.error().to_string();
  auto v = env_b->as<std::vector<std::optional<std::string>>>();
  EXPECT_EQ(v[0], "yes");
  EXPECT_EQ(v[1], std::nullopt);
  ::unsetenv("PYVISOR_INHERITED");
}

TEST_F(process_test, child_fds_and_signals_are_clean) {
  auto py = must_spawn(options());
  auto r = py.eval(
    "import os, signal\n"
    "fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))\n"
    "with open('/proc/self/status') as f:\n"
    "    st = dict(l.split(':', 1) for l in f if ':' in l)\n"
    "return [os.getpgrp() == os.getpid(), os.get_inheritable(3), os.get_inheritable(4),\n"
    "        st['SigBlk'].strip(), os.readlink('/proc/self/fd/0')]");
  ASSERT_TRUE(r) << r.error().to_string();
  auto o = r->as<msgpack::type::tuple<bool, bool, bool, std::string, std::string>>();
  EXPECT_TRUE(o.get<0>()) << "own process group";
  EXPECT_FALSE(o.get<1>()) << "fd 3 must not be inheritable";
  EXPECT_FALSE(o.get<2>()) << "fd 4 must not be inheritable";
  EXPECT_EQ(o.get<3>(), "0000000000000000") << "blocked signal mask";
  EXPECT_EQ(o.get<4>(), "/dev/null");
  // A grandchild started without close_fds sees neither protocol fd.
  auto g = py.eval("import subprocess, sys\n"
                   "probe = 'import os\\ndef has(fd):\\n    try:\\n        os.fstat(fd)\\n'\\\n"
                   "        '        return True\\n    except OSError:\\n        return False\\n'\\\n"
                   "        'print(has(3), has(4))'\n"
                   "out = subprocess.run([sys.executable, '-c', probe], capture_output=True, close_fds=False)\n"
                   "return out.stdout.decode().strip()");
  ASSERT_TRUE(g) << g.error().to_string();
  EXPECT_EQ(g->as<std::string>(), "False False");
}

TEST_F(process_test, stdout_and_stderr_lines_reach_the_log_with_the_label) {
  auto o = options();
  o.label = "chatty";
  auto py = must_spawn(o);
  auto r = py.eval("import sys\nprint('to stdout')\nprint('to stderr', file=sys.stderr)\n"
                   "sys.stdout.write('partial ')\nsys.stdout.write('line\\n')\nreturn 1");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_TRUE(wait_log([](auto& l) { return l.line == "partial line"; }));
  auto all = logs();
  EXPECT_TRUE(has_line(all, "chatty", log_source::python_stdout, "to stdout"));
  EXPECT_TRUE(has_line(all, "chatty", log_source::python_stderr, "to stderr"));
  EXPECT_TRUE(has_line(all, "chatty", log_source::python_stdout, "partial line"));
  for (auto& l : all) {
    if (l.label == "chatty") {
      EXPECT_EQ(l.pid, py.os_pid());
    }
  }
}

TEST_F(process_test, launcher_prefix) {
  auto o = options();
  o.launcher = {"/usr/bin/env", "TESTVAR=42"};
  o.python = test_python();
  auto py = must_spawn(o);
  auto r = py.eval("import os\nreturn os.getenv('TESTVAR')");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::string>(), "42");
  // env execs: the launcher's pid is Python's.
  EXPECT_EQ(py.eval("import os\nreturn os.getpid()")->as<int>(), py.os_pid());
}

TEST_F(process_test, stdio_transport) {
  auto o = options();
  o.transport = transport::stdio;
  o.label = "stdio";
  auto py = must_spawn(o);
  auto r = py.eval("print('printed in stdio mode')\nreturn sum(range(10))");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<int>(), 45);
  EXPECT_TRUE(wait_log([](auto& l) { return l.line == "printed in stdio mode"; }));
  auto in = py.eval("import sys\nreturn sys.stdin.read()");
  ASSERT_TRUE(in) << in.error().to_string();
  EXPECT_EQ(in->as<std::string>(), "");  // stdin is /dev/null, not the protocol
  EXPECT_EQ(py.eval("return 'still fine'")->as<std::string>(), "still fine");
}

TEST_F(process_test, garbage_on_the_reply_pipe_kills_only_that_interpreter) {
  auto py = must_spawn(options());
  auto other = must_spawn(options());
  auto r = py.eval("import os\nos.write(4, b'\\x00\\x00\\x00\\x03\\xc1\\xc1\\xc1')\nimport time\ntime.sleep(30)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error) << r.error().to_string();
  EXPECT_TRUE(eventually([&] { return py.state() == interpreter_state::stopped; }));
  EXPECT_EQ(other.eval("return 'unaffected'")->as<std::string>(), "unaffected");
}

TEST_F(process_test, oversized_frame_from_the_runner_is_rejected) {
  auto py = must_spawn(options());
  auto r = py.eval("import os, time\nos.write(4, b'\\x7f\\xff\\xff\\xff')\ntime.sleep(30)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::frame_too_large) << r.error().to_string();
}

TEST_F(process_test, frame_limits_in_both_directions) {
  auto o = options();
  o.max_frame_bytes = 64 * 1024;
  auto py = must_spawn(o);
  auto big_request = py.eval("return len(s)", {{"s", std::string(100 * 1024, 'x')}});
  ASSERT_FALSE(big_request);
  EXPECT_EQ(big_request.error().code, errc::frame_too_large);
  auto big_reply = py.eval("return 'y' * (100 * 1024)");
  ASSERT_FALSE(big_reply);
  EXPECT_TRUE(big_reply.error().code == errc::frame_too_large ||
              big_reply.error().code == errc::unserializable)
    << big_reply.error().to_string();
  // Large bytes results take another way out of the runner (head plus the bytes object): the
  // limit holds there too.
  if (py.state() == interpreter_state::ready) {
    auto big_bytes = py.eval("return bytes(2 << 20)");
    ASSERT_FALSE(big_bytes);
    EXPECT_TRUE(big_bytes.error().code == errc::frame_too_large ||
                big_bytes.error().code == errc::unserializable)
      << big_bytes.error().to_string();
  }
  // Either way the interpreter (runner-side refusal) or the host (kill) stays consistent.
  if (py.state() == interpreter_state::ready) {
    EXPECT_EQ(py.eval("return 1")->as<int>(), 1);
  }
}
