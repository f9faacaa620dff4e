// A tenant on a declarative venv (issue 10): a wheel built here (there is no package index),
// installed by sync_venv (what `pyvisor env sync` runs), is importable in the tenant's pool
// workers; a venv whose requirements changed since its sync is refused as stale with the fix.

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "pyvisor/config.hpp"
#include "pyvisor/deployment.hpp"
#include "pyvisor/venv.hpp"
#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;
namespace fs = std::filesystem;

namespace {

class venv_deploy_test : public runtime_test {
protected:
  fs::path dir_ = fs::temp_directory_path() / ("pyvisor-venv-deploy-" + std::to_string(::getpid()));

  void SetUp() override {
    fs::create_directories(dir_);
    runtime_test::SetUp();
  }
  void TearDown() override {
    runtime_test::TearDown();
    fs::remove_all(dir_);
  }

  static void write(const fs::path& p, const std::string& text) {
    fs::create_directories(p.parent_path());
    std::ofstream{p} << text;
  }

  /// Builds a wheel of a one-module package `name` whose `answer()` returns `value`.
  fs::path build_wheel(const std::string& name, int value) {
    auto src = dir_ / ("src-" + name);
    write(src / "setup.py", "from setuptools import setup\nsetup(name='" + name +
                              "', version='1.0', py_modules=['" + name + "'])\n");
    write(src / (name + ".py"), "def answer():\n    return " + std::to_string(value) + "\n");
    auto out = dir_ / "wheels";
    std::string cmd = "cd '" + src.string() +
                      "' && /usr/bin/python3 -m pip wheel --no-deps --no-build-isolation "
                      "--disable-pip-version-check -q -w '" + out.string() + "' . >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0)
      return {};
    for (auto& e : fs::directory_iterator(out))
      if (e.path().filename().string().rfind(name + "-", 0) == 0)
        return e.path();
    return {};
  }
};

} // namespace

TEST_F(venv_deploy_test, a_wheel_synced_into_the_tenants_venv_imports_in_its_workers) {
  auto wheel = build_wheel("pyvisor_probe_pkg", 42);
  ASSERT_FALSE(wheel.empty()) << "building the test wheel failed";
  venv_spec v;
  v.path = (dir_ / "venv").string();
  v.python = "/usr/bin/python3";
  v.system_site_packages = true;  // the runner's msgpack comes from Debian's python3-msgpack
  v.requirements = {wheel.string()};
  EXPECT_EQ(check_venv(v).kind, venv_state::missing);
  auto synced = sync_venv(v, "probe", [](std::string_view) {});
  ASSERT_TRUE(synced) << synced.error().to_string();
  EXPECT_EQ(check_venv(v).kind, venv_state::up_to_date);

  runtime_spec spec;
  tenant_spec t;
  t.name = "probe";
  t.venv = v;
  spec.tenants.push_back(t);
  pool_spec p;
  p.options.name = "p";
  p.options.workers = 1;
  p.tenant = "probe";
  p.preload = {"pyvisor_probe_pkg"};
  spec.pools.push_back(p);
  auto d = rt_->deploy(spec);
  ASSERT_TRUE(d) << d.error().to_string();
  auto pl = d->find_pool("p").value();
  for (auto& w : pl.stats().per_worker)
    track_pid(w.pid);
  auto r = pl.eval("import sys\nreturn [pyvisor_probe_pkg.answer(), sys.prefix]");
  ASSERT_TRUE(r) << r.error().to_string();
  auto got = r->to<std::tuple<int, std::string>>().value();
  EXPECT_EQ(std::get<0>(got), 42);
  EXPECT_EQ(fs::canonical(std::get<1>(got)), fs::canonical(v.path)) << "the venv's interpreter";
  EXPECT_TRUE(d->stop());

  // The requirement list changed since the sync: the venv is stale, and deploy says how to fix it.
  spec.tenants[0].venv->requirements.push_back("something-else");
  auto stale = rt_->deploy(spec);
  ASSERT_FALSE(stale);
  EXPECT_EQ(stale.error().code, errc::config_error);
  EXPECT_NE(stale.error().message.find("stale"), std::string::npos) << stale.error().message;
  EXPECT_NE(stale.error().message.find("pyvisor env sync"), std::string::npos) << stale.error().message;
}
