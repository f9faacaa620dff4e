// Resource limits (setrlimit between fork and exec) and the exit reasons they cause.
#include "isolation/isolation_fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

class limits_test : public isolation_test {};

} // namespace

TEST_F(limits_test, limits_are_visible_in_the_child) {
  auto o = options();
  o.isolation.limits.memory = std::uint64_t{1} << 30;
  o.isolation.limits.cpu_seconds = 100;
  o.isolation.limits.open_files = 64;
  o.isolation.limits.file_size = std::uint64_t{8} << 20;
  o.isolation.limits.processes = 4000;
  auto py = must_spawn(o);
  auto r = py.eval(
    "import resource as r\n"
    "return [list(r.getrlimit(x)) for x in (r.RLIMIT_AS, r.RLIMIT_CPU, r.RLIMIT_NOFILE,\n"
    "        r.RLIMIT_FSIZE, r.RLIMIT_NPROC, r.RLIMIT_CORE)]");
  ASSERT_TRUE(r) << r.error().to_string();
  auto v = r->as<std::vector<std::vector<std::int64_t>>>();
  ASSERT_EQ(v.size(), 6u);
  EXPECT_EQ(v[0], (std::vector<std::int64_t>{1 << 30, 1 << 30}));
  EXPECT_EQ(v[1], (std::vector<std::int64_t>{100, 101})) << "SIGXCPU at 100 s, SIGKILL at 101";
  EXPECT_EQ(v[2], (std::vector<std::int64_t>{64, 64}));
  EXPECT_EQ(v[3], (std::vector<std::int64_t>{8 << 20, 8 << 20}));
  EXPECT_EQ(v[4], (std::vector<std::int64_t>{4000, 4000}));
  EXPECT_EQ(v[5], (std::vector<std::int64_t>{0, 0})) << "no core dumps by default";
}

TEST_F(limits_test, a_memory_bomb_fails_or_kills_only_its_interpreter) {
  auto o = options();
  o.isolation.limits.memory = std::uint64_t{512} << 20;
  auto py = must_spawn(o);
  auto r = py.eval("a = []\nwhile True:\n    a.append(bytearray(16 << 20))", {}, {.timeout = scaled(60s)});
  ASSERT_FALSE(r);
  if (r.error().code == errc::python_exception) {
    EXPECT_EQ(r.error().python_type, "MemoryError") << r.error().to_string();
    auto after = py.eval("return 1 + 1");  // the bomb's list is garbage now
    ASSERT_TRUE(after) << after.error().to_string();
  } else {
    EXPECT_EQ(r.error().code, errc::interpreter_exited) << r.error().to_string();
    EXPECT_NE(r.error().message.find("memory limit"), std::string::npos) << r.error().message;
  }
  // The runtime is healthy: another interpreter (without the limit) still evaluates.
  auto other = must_spawn(options());
  auto x = other.eval("return 6 * 7");
  ASSERT_TRUE(x) << x.error().to_string();
  EXPECT_EQ(x->as<int>(), 42);
}

TEST_F(limits_test, shared_memory_under_a_memory_limit_only_when_sized) {
  // The areas count against the address space (RLIMIT_AS): a memory limit leaves them out
  // unless shared_memory_bytes asks for them.
  for (std::size_t area : {std::size_t{0}, std::size_t{32} << 20}) {
    auto o = options();
    o.isolation.limits.memory = std::uint64_t{512} << 20;
    o.shared_memory_bytes = area;
    auto py = must_spawn(o);
    std::vector<std::uint8_t> in(8 << 20, 7);
    auto r = py.eval("return b + b", {{"b", in}}, {.timeout = scaled(60s)});
    ASSERT_TRUE(r) << r.error().to_string();
    EXPECT_EQ(r->object().via.bin.size, 16u << 20);
    EXPECT_EQ(py.stats().shared_memory_out, area ? 1u : 0u);
    EXPECT_EQ(py.stats().shared_memory_in, area ? 1u : 0u);
    // Without areas the whole limit is Python's: 440 MiB more can be had.
    if (area == 0) {
      auto big = py.eval("x = bytearray(440 << 20)\nreturn len(x)", {}, {.timeout = scaled(60s)});
      EXPECT_TRUE(big) << big.error().to_string();
    }
  }
}

TEST_F(limits_test, a_busy_loop_over_cpu_seconds_dies_with_cpu_limit) {
  auto o = options();
  o.isolation.limits.cpu_seconds = 1;
  auto py = must_spawn(o);
  auto t0 = std::chrono::steady_clock::now();
  auto r = py.eval("while True:\n    pass", {}, {.timeout = scaled(60s)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited) << r.error().to_string();
  EXPECT_NE(r.error().message.find("cpu limit (cpu_seconds 1)"), std::string::npos)
    << r.error().message;
  EXPECT_NE(r.error().message.find("SIGXCPU"), std::string::npos) << r.error().message;
  EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(30s));
}

TEST_F(limits_test, file_size_limit_refuses_a_large_write) {
  auto o = options();
  o.isolation.limits.file_size = std::uint64_t{1} << 20;
  auto dir = scratch("fsize");
  auto py = must_spawn(o);
  // Python ignores SIGXFSZ: the write fails with EFBIG instead of killing the process.
  auto r = py.eval(
    "import errno\n"
    "try:\n"
    "    with open(path, 'wb') as f:\n"
    "        f.write(b'x' * (2 << 20))\n"
    "except OSError as e:\n"
    "    return errno.errorcode[e.errno]\n"
    "return 'written'",
    {{"path", dir + "/big"}});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::string>(), "EFBIG");
}

TEST_F(limits_test, bad_limits_are_config_errors) {
  auto o = options();
  o.isolation.limits.memory = 1024;
  auto r = spawn(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::config_error);
  EXPECT_NE(r.error().message.find("limits.memory"), std::string::npos) << r.error().message;
  auto c = options();
  c.isolation.limits.cpu_seconds = 0;
  auto rc = spawn(c);
  ASSERT_FALSE(rc);
  EXPECT_EQ(rc.error().code, errc::config_error);
  EXPECT_NE(rc.error().message.find("cpu_seconds"), std::string::npos) << rc.error().message;
}

TEST_F(limits_test, processes_limit_contains_a_fork_bomb_of_a_dedicated_user) {
  PYVISOR_REQUIRE_ROOT();
  auto user = ensure_user("pyvisor-test-a");
  ASSERT_TRUE(user) << "cannot create user pyvisor-test-a";
  ASSERT_TRUE(eventually([&] { return live_processes_of(user->uid).empty(); }))
    << "processes of pyvisor-test-a are left from before";
  auto o = options();
  o.isolation.identity.user = user->name;
  o.isolation.limits.processes = 20;
  auto py = must_spawn(o);
  auto r = py.eval(
    "import os, time, errno\n"
    "n = 0\n"
    "err = ''\n"
    "for i in range(500):\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "    except OSError as e:\n"
    "        err = errno.errorcode[e.errno]\n"
    "        break\n"
    "    if pid == 0:\n"
    "        time.sleep(600)\n"
    "        os._exit(0)\n"
    "    n += 1\n"
    "return [n, err]",
    {}, {.timeout = scaled(60s)});
  ASSERT_TRUE(r) << r.error().to_string();
  auto v = r->as<msgpack::type::tuple<int, std::string>>();
  EXPECT_EQ(v.get<1>(), "EAGAIN");
  EXPECT_LT(v.get<0>(), 20) << "bounded by limits.processes";
  EXPECT_GE(live_processes_of(user->uid).size(), static_cast<std::size_t>(v.get<0>()));
  ASSERT_TRUE(py.stop());
  // The guard kills the forked children with their interpreter.
  EXPECT_TRUE(eventually([&] { return live_processes_of(user->uid).empty(); }))
    << live_processes_of(user->uid).size() << " processes of the user are left";
}

TEST_F(limits_test, a_crash_under_a_memory_limit_is_reported_as_the_memory_limit) {
  // Where an allocation fails outside Python's reach (a C extension, the interpreter itself),
  // the process dies of SIGSEGV or SIGABRT: with a memory limit set that is what the reason
  // says, unlike the same crash without one.
  auto crash = "import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)";
  auto o = options();
  o.isolation.limits.memory = std::uint64_t{1} << 30;
  auto limited = must_spawn(o);
  auto r = limited.eval(crash);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited);
  EXPECT_NE(r.error().message.find("SIGSEGV"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("memory limit"), std::string::npos) << r.error().message;
  auto plain = must_spawn(options());
  auto p = plain.eval(crash);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, errc::interpreter_exited);
  EXPECT_EQ(p.error().message.find("memory limit"), std::string::npos) << p.error().message;
}
