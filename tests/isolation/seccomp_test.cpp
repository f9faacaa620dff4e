// The seccomp filter: denied syscalls fail with EPERM, everything else works.
#include "isolation/isolation_fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

class seccomp_test : public isolation_test {};

// unshare(CLONE_NEWUSER) and ptrace(PTRACE_TRACEME) through ctypes (Python 3.11 has no
// os.unshare); both succeed for root without the filter.
constexpr const char* probe = R"(import ctypes, errno, os
libc = ctypes.CDLL(None, use_errno=True)
def err(rc):
    return 'ok' if rc == 0 else errno.errorcode[ctypes.get_errno()]
CLONE_NEWUSER = 0x10000000
u = err(libc.unshare(CLONE_NEWUSER))
p = err(libc.ptrace(0, 0, None, None))
return [u, p, sum(range(10)), len(os.listdir('/'))  > 0]
)";

void expect_denied(interpreter& py) {
  auto r = py.eval(probe);
  ASSERT_TRUE(r) << r.error().to_string();
  auto v = r->as<msgpack::type::tuple<std::string, std::string, int, bool>>();
  EXPECT_EQ(v.get<0>(), "EPERM") << "unshare";
  EXPECT_EQ(v.get<1>(), "EPERM") << "ptrace";
  EXPECT_EQ(v.get<2>(), 45) << "ordinary code still runs";
  EXPECT_TRUE(v.get<3>());
}

} // namespace

TEST_F(seccomp_test, the_default_deny_list_stops_unshare_and_ptrace) {
  PYVISOR_REQUIRE_SECCOMP();
  auto o = options();
  o.isolation.sandbox.seccomp = true;
  auto py = must_spawn(o);
  expect_denied(py);
  auto st = py.eval("return [l.split()[1] for l in open('/proc/self/status') if l.startswith(('Seccomp:', 'NoNewPrivs:'))]");
  ASSERT_TRUE(st) << st.error().to_string();
  EXPECT_EQ(st->as<std::vector<std::string>>(), (std::vector<std::string>{"1", "2"}))
    << "no_new_privs and filter mode";
}

TEST_F(seccomp_test, a_custom_deny_list_replaces_the_default) {
  PYVISOR_REQUIRE_SECCOMP();
  auto o = options();
  o.isolation.sandbox.seccomp = true;
  o.isolation.sandbox.deny = {"getcwd"};
  auto py = must_spawn(o);
  auto r = py.eval(
    "import os\n"
    "try:\n"
    "    os.getcwd()\n"
    "except PermissionError:\n"
    "    return 'denied'\n"
    "return 'allowed'");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::string>(), "denied");
}

TEST_F(seccomp_test, unknown_syscall_names_are_config_errors) {
  PYVISOR_REQUIRE_SECCOMP();
  auto o = options();
  o.isolation.sandbox.seccomp = true;
  o.isolation.sandbox.deny = {"ptrace", "no_such_syscall"};
  auto r = spawn(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::config_error);
  EXPECT_NE(r.error().message.find("'no_such_syscall'"), std::string::npos) << r.error().message;
}

TEST_F(seccomp_test, the_filter_applies_inside_bwrap_too) {
  PYVISOR_REQUIRE_SECCOMP();
  PYVISOR_REQUIRE_BWRAP();
  auto o = options();
  o.isolation.sandbox.kind = sandbox_kind::bwrap;
  o.isolation.sandbox.seccomp = true;
  auto py = must_spawn(o);
  expect_denied(py);
}

TEST_F(seccomp_test, bwrap_with_the_stdio_transport_gets_the_filter_and_no_stray_fds) {
  PYVISOR_REQUIRE_SECCOMP();
  PYVISOR_REQUIRE_BWRAP();
  auto o = options();
  o.transport = transport::stdio;
  o.isolation.sandbox.kind = sandbox_kind::bwrap;
  o.isolation.sandbox.seccomp = true;
  auto py = must_spawn(o);
  expect_denied(py);
  // fd 7 carried the filter to bwrap, which closed it: nothing above stdio is inherited.
  auto r = py.eval(
    "import os\n"
    "out = []\n"
    "for f in [int(x) for x in os.listdir('/proc/self/fd')]:\n"
    "    try:\n"
    "        if os.get_inheritable(f):\n"
    "            out.append(f)\n"
    "    except OSError:\n"
    "        pass\n"
    "return max(out)");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_LE(r->as<int>(), 2);
}
