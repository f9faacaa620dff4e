// Identities: the Python process runs as a dedicated user (setgroups -> setgid -> setuid).
#include <sys/syscall.h>
#include <sys/wait.h>

#include "isolation/isolation_fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

class identity_test : public isolation_test {};

} // namespace

TEST_F(identity_test, tenants_run_as_their_users_and_cannot_read_each_others_files) {
  PYVISOR_REQUIRE_ROOT();
  auto a = ensure_user("pyvisor-test-a");
  auto b = ensure_user("pyvisor-test-b");
  ASSERT_TRUE(a && b) << "cannot create the test users";
  auto shared = scratch("shared", 01777);
  auto oa = options();
  oa.isolation.identity.user = a->name;
  auto ob = options();
  ob.isolation.identity.user = b->name;
  auto pa = must_spawn(oa);
  auto pb = must_spawn(ob);
  auto ids = pa.eval("import os\nreturn [os.getuid(), os.geteuid(), os.getgid(), os.getegid()]");
  ASSERT_TRUE(ids) << ids.error().to_string();
  EXPECT_EQ(ids->as<std::vector<std::int64_t>>(),
            (std::vector<std::int64_t>{a->uid, a->uid, a->gid, a->gid}));
  auto path = shared + "/secret";
  auto w = pa.eval(
    "import os\n"
    "fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)\n"
    "os.write(fd, b'tenant a')\n"
    "os.close(fd)\n"
    "st = os.stat(path)\n"
    "return [st.st_uid, oct(st.st_mode & 0o777)]",
    {{"path", path}});
  ASSERT_TRUE(w) << w.error().to_string();
  auto wv = w->as<msgpack::type::tuple<std::int64_t, std::string>>();
  EXPECT_EQ(wv.get<0>(), a->uid);
  EXPECT_EQ(wv.get<1>(), "0o600");
  auto rb = pb.eval(
    "try:\n"
    "    open(path).read()\n"
    "except PermissionError:\n"
    "    return 'denied'\n"
    "return 'read'",
    {{"path", path}});
  ASSERT_TRUE(rb) << rb.error().to_string();
  EXPECT_EQ(rb->as<std::string>(), "denied");
  // Neither can signal the other (nor the host).
  auto kill = pb.eval(
    "import os\n"
    "try:\n"
    "    os.kill(pid, 0)\n"
    "except PermissionError:\n"
    "    return 'denied'\n"
    "return 'allowed'",
    {{"pid", pa.os_pid()}});
  ASSERT_TRUE(kill) << kill.error().to_string();
  EXPECT_EQ(kill->as<std::string>(), "denied");
}

TEST_F(identity_test, an_explicit_group_replaces_the_supplementary_groups) {
  PYVISOR_REQUIRE_ROOT();
  auto a = ensure_user("pyvisor-test-a");
  ASSERT_TRUE(a);
  auto o = options();
  o.isolation.identity.user = std::to_string(a->uid);  // numbers work as well as names
  o.isolation.identity.group = "nogroup";
  auto* gr = ::getgrnam("nogroup");
  if (gr == nullptr)
    GTEST_SKIP() << "no group 'nogroup' on this host";
  auto py = must_spawn(o);
  auto r = py.eval("import os\nreturn [os.getuid(), os.getgid(), os.getgroups()]");
  ASSERT_TRUE(r) << r.error().to_string();
  auto v = r->as<msgpack::type::tuple<std::int64_t, std::int64_t, std::vector<std::int64_t>>>();
  EXPECT_EQ(v.get<0>(), a->uid);
  EXPECT_EQ(v.get<1>(), gr->gr_gid);
  EXPECT_EQ(v.get<2>(), std::vector<std::int64_t>{gr->gr_gid});
}

TEST_F(identity_test, unknown_users_and_groups_are_config_errors) {
  PYVISOR_REQUIRE_ROOT();
  auto o = options();
  o.isolation.identity.user = "pyvisor-no-such-user";
  auto r = spawn(o);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::config_error);
  EXPECT_NE(r.error().message.find("unknown user 'pyvisor-no-such-user'"), std::string::npos)
    << r.error().message;
  auto g = options();
  g.isolation.identity.group = "pyvisor-no-such-group";
  auto rg = spawn(g);
  ASSERT_FALSE(rg);
  EXPECT_EQ(rg.error().code, errc::config_error);
  EXPECT_NE(rg.error().message.find("unknown group 'pyvisor-no-such-group'"), std::string::npos)
    << rg.error().message;
}

TEST_F(identity_test, an_identity_needs_a_root_host) {
  // Checked in a forked child that drops to nobody (raw syscalls: a fork of a threaded
  // process); when the test itself is not root, checked right here.
  isolation iso;
  iso.identity.user = "nobody";
  auto check = [&iso] {
    auto r = process::check_isolation(iso);
    return !r && r.error().code == errc::config_error &&
           r.error().message == "identity (user 'nobody') needs the host to run as root";
  };
  if (::geteuid() != 0) {
    EXPECT_TRUE(check());
    return;
  }
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    const gid_t none[1] = {65534};
    if (::syscall(SYS_setgroups, 1, none) != 0 || ::syscall(SYS_setresgid, 65534, 65534, 65534) != 0 ||
        ::syscall(SYS_setresuid, 65534, 65534, 65534) != 0)
      ::_exit(2);
    ::_exit(check() ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "1: not refused as expected; 2: could not drop to nobody";
}
