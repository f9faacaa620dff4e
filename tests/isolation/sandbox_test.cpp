// The bubblewrap sandbox: network, filesystem, PID namespace, and the host's signals
// (interrupts, stop) still reaching Python inside it.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>
#include <fstream>

#include "isolation/isolation_fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

class sandbox_test : public isolation_test {
protected:
  interpreter_options sandboxed() {
    auto o = options();
    o.isolation.sandbox.kind = sandbox_kind::bwrap;
    return o;
  }
};

/// A TCP listener on 127.0.0.1 (ephemeral port), closed at scope exit.
struct listener {
  int fd = -1;
  int port = 0;
  listener() {
    fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0 &&
        ::listen(fd, 16) == 0 && ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0)
      port = ntohs(a.sin_port);
  }
  ~listener() {
    if (fd >= 0)
      ::close(fd);
  }
};

constexpr const char* connect_code = R"(import socket
try:
    s = socket.create_connection(('127.0.0.1', port), timeout=5)
    s.close()
    return 'connected'
except OSError as e:
    return type(e).__name__
)";

} // namespace

TEST_F(sandbox_test, no_network_unless_asked) {
  PYVISOR_REQUIRE_BWRAP();
  listener l;
  ASSERT_GT(l.port, 0);
  auto off = must_spawn(sandboxed());
  auto r = off.eval(connect_code, {{"port", l.port}});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::string>(), "ConnectionRefusedError") << "its own loopback only";
  auto o = sandboxed();
  o.isolation.sandbox.network = true;
  auto on = must_spawn(o);
  auto r2 = on.eval(connect_code, {{"port", l.port}});
  ASSERT_TRUE(r2) << r2.error().to_string();
  EXPECT_EQ(r2->as<std::string>(), "connected");
}

TEST_F(sandbox_test, only_the_work_dir_and_a_private_tmp_are_writable) {
  PYVISOR_REQUIRE_BWRAP();
  auto base = scratch("base");
  auto work = base + "/work";  // created by the spawn
  auto o = sandboxed();
  o.isolation.sandbox.work_dir = work;
  auto py = must_spawn(o);
  auto tag = "pyvisor-iso-" + std::to_string(::getpid());
  auto r = py.eval(
    "import os\n"
    "def try_write(p):\n"
    "    try:\n"
    "        with open(p, 'w') as f:\n"
    "            f.write('x')\n"
    "        return 'written'\n"
    "    except OSError as e:\n"
    "        return type(e).__name__\n"
    "return [os.getcwd(), try_write(work + '/out'), try_write('/tmp/' + tag),\n"
    "        try_write('/var/tmp/' + tag), try_write('/usr/' + tag), try_write('/etc/' + tag),\n"
    "        try_write(base + '/' + tag)]",
    {{"work", work}, {"tag", tag}, {"base", base}});
  ASSERT_TRUE(r) << r.error().to_string();
  auto v = r->as<std::vector<std::string>>();
  ASSERT_EQ(v.size(), 7u);
  EXPECT_EQ(v[0], work) << "the work dir is the working directory";
  EXPECT_EQ(v[1], "written");
  EXPECT_EQ(v[2], "written") << "its private /tmp";
  for (int i = 3; i < 6; ++i)  // read-only or absent; base/ exists only in its tmpfs
    EXPECT_NE(v[static_cast<std::size_t>(i)], "written") << "write " << i;
  EXPECT_TRUE(std::ifstream(work + "/out").good()) << "the work dir is the host's";
  struct stat st;
  ASSERT_EQ(::stat(work.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  for (auto p : {"/tmp/" + tag, "/var/tmp/" + tag, "/usr/" + tag, "/etc/" + tag, base + "/" + tag})
    EXPECT_FALSE(std::ifstream(p).good()) << p << " reached the host";
}

TEST_F(sandbox_test, it_sees_only_its_own_processes) {
  PYVISOR_REQUIRE_BWRAP();
  auto py = must_spawn(sandboxed());
  auto r = py.eval("import os\nreturn [os.getpid(), sorted(int(p) for p in os.listdir('/proc') if p.isdigit())]");
  ASSERT_TRUE(r) << r.error().to_string();
  auto v = r->as<msgpack::type::tuple<int, std::vector<int>>>();
  EXPECT_LE(v.get<1>().size(), 3u) << "bwrap's init, Python, maybe a helper";
  EXPECT_NE(std::find(v.get<1>().begin(), v.get<1>().end(), v.get<0>()), v.get<1>().end());
  // os_pid() is the sandboxed Python's pid on the host (signals go there), not bwrap's.
  std::ifstream status("/proc/" + std::to_string(py.os_pid()) + "/status");
  std::string line, nspid;
  while (std::getline(status, line))
    if (line.rfind("NSpid:", 0) == 0)
      nspid = line;
  EXPECT_NE(nspid.find("\t" + std::to_string(v.get<0>())), std::string::npos) << nspid;
}

TEST_F(sandbox_test, interrupts_and_stop_reach_python_inside_the_sandbox) {
  PYVISOR_REQUIRE_BWRAP();
  auto o = sandboxed();
  o.interrupt = {.grace = 50ms, .kill_after = 5000ms};
  auto py = must_spawn(o);
  int pid = py.os_pid();
  auto r = py.eval("import time\nwhile True:\n    time.sleep(0.05)", {}, {.timeout = 300ms});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout);
  auto next = py.eval("return 'served'", {}, {.timeout = scaled(5s)});
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(next->as<std::string>(), "served");
  EXPECT_EQ(py.os_pid(), pid) << "the same process: the SIGINT did not kill the sandbox";
  // The stop sequence ends it (the shutdown request, then signals to its process group).
  auto t0 = std::chrono::steady_clock::now();
  ASSERT_TRUE(py.stop());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, scaled(10s));
  EXPECT_TRUE(eventually([&] { return process_gone(pid); }));
}

TEST_F(sandbox_test, a_signal_death_inside_is_reported_as_such) {
  PYVISOR_REQUIRE_BWRAP();
  auto py = must_spawn(sandboxed());
  auto r = py.eval("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited);
  EXPECT_NE(r.error().message.find("killed by signal 9 (SIGKILL)"), std::string::npos)
    << r.error().message;
}

TEST_F(sandbox_test, a_dedicated_user_inside_the_sandbox) {
  PYVISOR_REQUIRE_ROOT();
  PYVISOR_REQUIRE_BWRAP();
  if (!support().userns)
    GTEST_SKIP() << "no unprivileged user namespaces: " << support().userns_error;
  auto a = ensure_user("pyvisor-test-a");
  ASSERT_TRUE(a);
  auto base = scratch("base");
  auto o = sandboxed();
  o.isolation.identity.user = a->name;
  o.isolation.sandbox.work_dir = base + "/work";
  o.isolation.sandbox.seccomp = support().seccomp;
  auto py = must_spawn(o);
  auto r = py.eval("import os\nopen('f', 'w').write('x')\nreturn [os.getuid(), os.getgid(), os.stat('f').st_uid]");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::vector<std::int64_t>>(),
            (std::vector<std::int64_t>{a->uid, a->gid, a->uid}));
  struct stat st;
  ASSERT_EQ(::stat((base + "/work").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, a->uid) << "the work dir belongs to the identity";
}

TEST_F(sandbox_test, sandbox_paths_without_bwrap_are_config_errors) {
  auto o = options();
  o.isolation.sandbox.work_dir = "/tmp/x";
  auto r = spawn(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::config_error);
  EXPECT_NE(r.error().message.find("bwrap"), std::string::npos) << r.error().message;
}

TEST_F(sandbox_test, limits_apply_inside_the_sandbox_and_name_their_exit) {
  PYVISOR_REQUIRE_BWRAP();
  auto o = sandboxed();
  o.isolation.limits.cpu_seconds = 1;
  o.isolation.limits.open_files = 100;
  auto py = must_spawn(o);
  auto lim = py.eval("import resource\nreturn list(resource.getrlimit(resource.RLIMIT_NOFILE))");
  ASSERT_TRUE(lim) << lim.error().to_string();
  EXPECT_EQ(lim->as<std::vector<std::int64_t>>(), (std::vector<std::int64_t>{100, 100}));
  auto r = py.eval("while True:\n    pass", {}, {.timeout = scaled(60s)});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited) << r.error().to_string();
  // bwrap reports the death by SIGXCPU as exit code 152: the reason still names the signal.
  EXPECT_NE(r.error().message.find("SIGXCPU"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("cpu limit (cpu_seconds 1)"), std::string::npos)
    << r.error().message;
}

TEST_F(sandbox_test, large_bytes_use_shared_memory_inside_the_sandbox) {
  PYVISOR_REQUIRE_BWRAP();
  auto py = must_spawn(sandboxed());
  std::vector<std::uint8_t> in(3 << 20);
  for (std::size_t i = 0; i < in.size(); ++i)
    in[i] = static_cast<std::uint8_t>(i * 13);
  auto r = py.eval("return b[::-1]", {{"b", in}});
  ASSERT_TRUE(r) << r.error();
  ASSERT_EQ(r->object().type, msgpack::type::BIN);
  std::vector<std::uint8_t> reversed(in.rbegin(), in.rend());
  EXPECT_EQ(std::memcmp(r->object().via.bin.ptr, reversed.data(), reversed.size()), 0);
  EXPECT_EQ(py.stats().shared_memory_out, 1u);
  EXPECT_EQ(py.stats().shared_memory_in, 1u);
}
