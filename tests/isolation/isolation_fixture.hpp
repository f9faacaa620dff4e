#pragma once

// Shared pieces of the isolation tests: the runtime fixture with its leak audit, test users,
// the host's support for each feature, and a scratch directory.

#include <grp.h>
#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "process/sandbox_support.hpp"
#include "support/fixture.hpp"

namespace pyvisor::test {

struct test_user {
  std::string name;
  uid_t uid = 0;
  gid_t gid = 0;
};

/// The user `name`, created (a system user, no home) when missing. Needs root.
inline std::optional<test_user> ensure_user(const std::string& name) {
  auto look = [&]() -> std::optional<test_user> {
    if (auto* pw = ::getpwnam(name.c_str()))
      return test_user{name, pw->pw_uid, pw->pw_gid};
    return std::nullopt;
  };
  if (auto u = look())
    return u;
  std::string cmd = "useradd --system --no-create-home --shell /usr/sbin/nologin " + name +
                    " >/dev/null 2>&1";
  (void) std::system(cmd.c_str());  // may race with another run creating it: look again
  return look();
}

/// The processes of `uid` that are alive (not zombies).
inline std::vector<int> live_processes_of(uid_t uid) {
  std::vector<int> out;
  for (auto& p : all_processes()) {
    if (p.state == 'Z' || p.state == 'X')
      continue;
    struct stat st;
    if (::stat(("/proc/" + std::to_string(p.pid)).c_str(), &st) == 0 && st.st_uid == uid)
      out.push_back(p.pid);
  }
  return out;
}

class isolation_test : public runtime_test {
protected:
  void TearDown() override {
    runtime_test::TearDown();
    std::error_code ec;
    if (!scratch_.empty())
      std::filesystem::remove_all(scratch_, ec);
  }

  /// A fresh directory (mode `mode`) removed after the test.
  std::string scratch(const std::string& tag, mode_t mode = 0755) {
    if (scratch_.empty()) {
      scratch_ = "/tmp/pyvisor-iso-" + std::to_string(::getpid()) + "-" +
                 ::testing::UnitTest::GetInstance()->current_test_info()->name();
      std::filesystem::create_directories(scratch_);
      ::chmod(scratch_.c_str(), 0755);
    }
    auto d = scratch_ + "/" + tag;
    std::filesystem::create_directories(d);
    ::chmod(d.c_str(), mode);
    return d;
  }

  static const process::sandbox_support& support() { return process::host_sandbox_support(); }

  std::string scratch_;
};

#define PYVISOR_REQUIRE_ROOT()                                                            \
  do {                                                                                   \
    if (::geteuid() != 0)                                                                \
      GTEST_SKIP() << "needs root (identities); this test process runs as uid "          \
                   << ::geteuid();                                                       \
  } while (0)

#define PYVISOR_REQUIRE_BWRAP()                                                           \
  do {                                                                                   \
    if (!support().bwrap)                                                                \
      GTEST_SKIP() << "no working bubblewrap here: " << support().bwrap_error;           \
  } while (0)

#define PYVISOR_REQUIRE_SECCOMP()                                                         \
  do {                                                                                   \
    if (!support().seccomp)                                                              \
      GTEST_SKIP() << "the kernel lacks seccomp filters: " << support().seccomp_error;   \
  } while (0)

} // namespace pyvisor::test
