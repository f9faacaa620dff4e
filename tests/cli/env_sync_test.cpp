// Declarative venvs: `pyvisor env sync CONFIG` and the library's check_venv/sync_venv, with a
// wheel built locally in the test (no package index here): create, skip when up to date,
// reinstall when the requirements change, fail with the tool's output.

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli_test_util.hpp"
#include "pyvisor/venv.hpp"

namespace {

using pyvisor::cli_test::describe;
using pyvisor::cli_test::pyvisor;
using pyvisor::cli_test::read_file;
using pyvisor::cli_test::run_process;
using pyvisor::cli_test::temp_dir;
using pyvisor::cli_test::write_file;

constexpr const char* system_python = "/usr/bin/python3";

/// Builds the wheel of a one-module package `name` (version `version`) whose module holds
/// GREETING = `greeting`; returns the wheel's absolute path.
std::string build_wheel(const temp_dir& dir, const std::string& name, const std::string& version,
                        const std::string& greeting) {
  const std::string src = dir / ("src-" + version);
  write_file(src + "/pyproject.toml",
             "[build-system]\nrequires = [\"setuptools\"]\nbuild-backend = \"setuptools.build_meta\"\n"
             "[project]\nname = \"" + name + "\"\nversion = \"" + version + "\"\n");
  write_file(src + "/" + name + "/__init__.py", "GREETING = \"" + greeting + "\"\n");
  const std::string out = dir / ("wheels-" + version);
  const auto r = run_process(system_python, {"-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                                             "--disable-pip-version-check", "-q", "-w", out, src});
  EXPECT_EQ(r.status, 0) << describe(r);
  for (const auto& e : std::filesystem::directory_iterator(out)) {
    if (e.path().extension() == ".whl") return e.path().string();
  }
  ADD_FAILURE() << "no wheel in " << out;
  return {};
}

std::string config_with(const std::string& venv, const std::vector<std::string>& requirements) {
  std::string reqs;
  for (const auto& r : requirements) reqs += (reqs.empty() ? "\"" : ", \"") + r + "\"";
  return "[tenants.web]\n"
         "[tenants.web.venv]\n"
         "path = \"" + venv + "\"\n"
         "python = \"" + system_python + "\"\n"
         "system_site_packages = true\n"
         "requirements = [" + reqs + "]\n"
         "[tenants.plain]\n"
         "[pools.p]\ntenant = \"web\"\nsize = 1\n";
}

pyvisor::venv_spec spec_of(const std::string& venv, const std::vector<std::string>& requirements) {
  pyvisor::venv_spec s;
  s.path = venv;
  s.python = system_python;
  s.system_site_packages = true;
  s.requirements = requirements;
  return s;
}

/// What the venv's python prints for `code`.
std::string venv_run(const std::string& venv, const std::string& code) {
  const auto r = run_process(venv + "/bin/python", {"-c", code});
  EXPECT_EQ(r.status, 0) << describe(r);
  return r.out;
}

TEST(EnvSync, CreatesSkipsAndReinstalls) {
  temp_dir dir;
  const std::string wheel1 = build_wheel(dir, "pyvisor_cli_probe", "1.0", "one");
  const std::string wheel2 = build_wheel(dir, "pyvisor_cli_probe", "2.0", "two");
  ASSERT_FALSE(wheel1.empty());
  ASSERT_FALSE(wheel2.empty());
  const std::string venv = dir / "venvs/web";
  const std::string config = dir / "pyvisor.toml";
  write_file(config, config_with(venv, {wheel1}));

  EXPECT_EQ(pyvisor::check_venv(spec_of(venv, {wheel1})).kind, pyvisor::venv_state::missing);

  // Missing: created, the wheel installed, stamped.
  auto r = pyvisor({"env", "sync", config});
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_NE(r.out.find("venv web: creating " + venv + "\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("venv web: installing 1 requirement\n"), std::string::npos) << r.out;
  EXPECT_TRUE(r.out.ends_with("venv web: up to date\n")) << r.out;
  EXPECT_EQ(venv_run(venv, "import pyvisor_cli_probe as m; print(m.GREETING)"), "one\n");
  // system_site_packages: Debian's packages are visible.
  EXPECT_EQ(venv_run(venv, "import sys; print(sys.prefix != sys.base_prefix)"), "True\n");
  EXPECT_EQ(pyvisor::check_venv(spec_of(venv, {wheel1})).kind, pyvisor::venv_state::up_to_date);
  EXPECT_EQ(read_file(venv + "/" + std::string(pyvisor::venv_stamp_file)),
            pyvisor::venv_stamp(spec_of(venv, {wheel1})));

  // Up to date: nothing runs.
  r = pyvisor({"env", "sync", config});
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "venv web: up to date\n");

  // Requirements changed: stale, reinstalled into the same venv.
  const auto stale = pyvisor::check_venv(spec_of(venv, {wheel2}));
  EXPECT_EQ(stale.kind, pyvisor::venv_state::stale);
  EXPECT_EQ(stale.detail, "requirements changed");
  write_file(config, config_with(venv, {wheel2}));
  r = pyvisor({"env", "sync", config, "--tenant", "web"});
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out.find("creating"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("venv web: installing 1 requirement\n"), std::string::npos) << r.out;
  EXPECT_TRUE(r.out.ends_with("venv web: up to date\n")) << r.out;
  EXPECT_EQ(venv_run(venv, "import pyvisor_cli_probe as m; print(m.GREETING)"), "two\n");
  EXPECT_EQ(pyvisor::check_venv(spec_of(venv, {wheel2})).kind, pyvisor::venv_state::up_to_date);

  // A tenant without a venv, named: said so; an unknown tenant: a usage error.
  r = pyvisor({"env", "sync", config, "--tenant", "plain"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "tenant plain: no venv\n");
  r = pyvisor({"env", "sync", config, "--tenant", "nobody"});
  EXPECT_EQ(r.status, 2) << describe(r);
  EXPECT_NE(r.err.find("no tenant 'nobody'"), std::string::npos) << r.err;

  // `pyvisor check` shows the venv's state.
  r = pyvisor({"check", config});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_NE(r.out.find("  python: " + venv + "/bin/python\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("system site packages, 1 requirement, up_to_date"), std::string::npos)
      << r.out;
}

TEST(EnvSync, StaleWhenTheBaseChangesOrTheStampIsMissing) {
  temp_dir dir;
  const std::string venv = dir / "v";
  const auto spec = spec_of(venv, {});
  const auto missing = pyvisor::check_venv(spec);
  EXPECT_EQ(missing.kind, pyvisor::venv_state::missing);
  EXPECT_EQ(missing.detail, "no " + venv + "/bin/python");
  EXPECT_EQ(pyvisor::venv_python(spec), venv + "/bin/python");

  // No requirements: only the venv and the stamp (through the library this time).
  std::vector<std::string> progress;
  auto done = pyvisor::sync_venv(spec, "v", [&](std::string_view l) { progress.emplace_back(l); });
  ASSERT_TRUE(done) << done.error().to_string();
  ASSERT_GE(progress.size(), 2u);
  EXPECT_EQ(progress.front(), "venv v: creating " + venv);
  EXPECT_EQ(progress.back(), "venv v: up to date");
  EXPECT_EQ(pyvisor::check_venv(spec).kind, pyvisor::venv_state::up_to_date);

  auto isolated = spec;
  isolated.system_site_packages = false;
  const auto changed = pyvisor::check_venv(isolated);
  EXPECT_EQ(changed.kind, pyvisor::venv_state::stale);
  EXPECT_EQ(changed.detail, "python or system_site_packages changed");
  progress.clear();
  done = pyvisor::sync_venv(isolated, "v", [&](std::string_view l) { progress.emplace_back(l); });
  ASSERT_TRUE(done) << done.error().to_string();
  EXPECT_EQ(progress.front(), "venv v: recreating " + venv);
  EXPECT_EQ(pyvisor::check_venv(isolated).kind, pyvisor::venv_state::up_to_date);

  std::filesystem::remove(venv + "/" + std::string(pyvisor::venv_stamp_file));
  EXPECT_EQ(pyvisor::check_venv(isolated).kind, pyvisor::venv_state::stale);

  EXPECT_NE(pyvisor::venv_fix_hint("/etc/pyvisor.toml").find("pyvisor env sync /etc/pyvisor.toml"),
            std::string::npos);
}

TEST(EnvSync, AFailingInstallExitsOneWithTheToolsOutput) {
  temp_dir dir;
  const std::string venv = dir / "venvs/web";
  const std::string config = dir / "pyvisor.toml";
  write_file(config, config_with(venv, {dir / "no-such-package-1.0-py3-none-any.whl"}));
  auto r = pyvisor({"env", "sync", config});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_NE(r.err.find("error: config_error: venv web: `"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("failed (exit status"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("no-such-package"), std::string::npos) << r.err;
  // Not stamped: still stale.
  EXPECT_EQ(pyvisor::check_venv(spec_of(venv, {dir / "no-such-package-1.0-py3-none-any.whl"})).kind,
            pyvisor::venv_state::stale);

  // An interpreter that does not exist: spawn_failed.
  pyvisor::venv_spec bad = spec_of(dir / "other", {});
  bad.python = "no-such-python3";
  auto done = pyvisor::sync_venv(bad, nullptr);
  ASSERT_FALSE(done);
  EXPECT_EQ(done.error().code, pyvisor::errc::spawn_failed);
}

} // namespace
