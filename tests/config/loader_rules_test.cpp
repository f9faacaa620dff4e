// The loader: [runtime], [supervisor] and [tenants.NAME]: mapping onto the structs, range and
// value rules with their positions, relative paths.
#include <filesystem>

#include "config_test_util.hpp"

namespace pyvisor::config_test {
namespace {

using namespace std::chrono_literals;

TEST(LoaderRules, RuntimeAndSupervisorMapOntoTheStructs) {
  auto s = spec_of(R"(
[runtime]
threads = 4
log_level = "debug"
log_format = "json"
[supervisor]
strategy = "rest_for_one"
intensity = 3
period = "10s"
[supervisor.backoff]
base = "50ms"
cap = "1m"
jitter = 0
reset_after = "forever"
)");
  EXPECT_EQ(s.runtime.threads, 4u);
  EXPECT_EQ(s.runtime.log_level, "debug");
  EXPECT_EQ(s.runtime.log_format, "json");
  EXPECT_EQ(s.supervisor.strategy, restart_strategy::rest_for_one);
  EXPECT_EQ(s.supervisor.intensity, 3);
  EXPECT_EQ(s.supervisor.period, 10s);
  EXPECT_EQ(s.supervisor.backoff.base, 50ms);
  EXPECT_EQ(s.supervisor.backoff.cap, 1min);
  EXPECT_EQ(s.supervisor.backoff.jitter, 0.0);
  EXPECT_EQ(s.supervisor.backoff.reset_after, forever);
}

TEST(LoaderRules, SupervisorRanges) {
  EXPECT_EQ(problems("[supervisor]\nintensity = -1\nperiod = \"0s\"\n"),
            (strings{"t.toml:2:13: supervisor.intensity: must be at least 0, got -1",
                     "t.toml:3:10: supervisor.period: must be positive, got 0ms"}));
  EXPECT_EQ(problems("[supervisor.backoff]\nbase = \"2s\"\ncap = \"1s\"\njitter = 1.0\n"),
            (strings{"t.toml:3:7: supervisor.backoff.cap: cap (1s) must not be below base (2s)",
                     "t.toml:4:10: supervisor.backoff.jitter: must be at least 0 and below 1, got "
                     "1"}));
  EXPECT_EQ(problems("[supervisor.backoff]\njitter = -0.5\n"),
            strings{"t.toml:2:10: supervisor.backoff.jitter: must be at least 0 and below 1, "
                    "got -0.5"});
}

TEST(LoaderRules, TenantMapsOntoTheStruct) {
  auto s = spec_of(R"(
[tenants.alice]
python = "/usr/bin/python3"
python_version = "3.11"
host_functions = ["log", "fetch"]
user = "alice"
group = "users"
sandbox = "bwrap"
network = true
work_dir = "work"
read_only = ["/srv/models"]
seccomp = true
seccomp_deny = ["ptrace", "bpf"]
[tenants.alice.venv]
path = "venvs/alice"
python = "python3.11"
system_site_packages = true
requirements = ["numpy==1.26.4", "./wheels/x.whl"]
[tenants.alice.environment]
inherit = ["PATH", "HOME"]
set = { B = "2", A = "1" }
[tenants.alice.limits]
memory = "1GiB"
cpu_seconds = 60
open_files = 256
file_size = 1048576
processes = 64
core = "inherit"
)");
  ASSERT_EQ(s.tenants.size(), 1u);
  const auto& t = s.tenants[0];
  EXPECT_EQ(t.name, "alice");
  EXPECT_EQ(t.python, "/usr/bin/python3");
  EXPECT_EQ(t.python_version, "3.11");
  EXPECT_EQ(t.host_functions, (strings{"log", "fetch"}));
  EXPECT_EQ(t.identity.user, "alice");
  EXPECT_EQ(t.identity.group, "users");
  EXPECT_EQ(t.sandbox.kind, sandbox_kind::bwrap);
  EXPECT_TRUE(t.sandbox.network);
  EXPECT_EQ(t.sandbox.work_dir, data_dir + "/work");
  EXPECT_EQ(t.sandbox.read_only, strings{"/srv/models"});
  EXPECT_TRUE(t.sandbox.seccomp);
  EXPECT_EQ(t.sandbox.deny, (strings{"ptrace", "bpf"}));
  ASSERT_TRUE(t.venv);
  EXPECT_EQ(t.venv->path, data_dir + "/venvs/alice");
  EXPECT_EQ(t.venv->python, "python3.11");
  EXPECT_TRUE(t.venv->system_site_packages);
  EXPECT_EQ(t.venv->requirements, (strings{"numpy==1.26.4", "./wheels/x.whl"}));
  EXPECT_EQ(t.environment.inherit, (strings{"PATH", "HOME"}));
  using kv = std::pair<std::string, std::string>;
  EXPECT_EQ(t.environment.set, (std::vector<kv>{{"A", "1"}, {"B", "2"}}));  // sorted by name
  EXPECT_EQ(t.limits.memory, std::uint64_t{1} << 30);
  EXPECT_EQ(t.limits.cpu_seconds, 60u);
  EXPECT_EQ(t.limits.open_files, 256u);
  EXPECT_EQ(t.limits.file_size, 1048576u);
  EXPECT_EQ(t.limits.processes, 64u);
  EXPECT_FALSE(t.limits.core);
}

TEST(LoaderRules, TenantDefaults) {
  auto s = spec_of("[tenants.plain]\n");
  ASSERT_EQ(s.tenants.size(), 1u);
  const auto& t = s.tenants[0];
  EXPECT_EQ(t.python, "python3");
  EXPECT_FALSE(t.venv);
  EXPECT_FALSE(t.host_functions);
  EXPECT_TRUE(t.identity.empty());
  EXPECT_EQ(t.sandbox.kind, sandbox_kind::none);
  EXPECT_EQ(t.environment.inherit, (strings{"PATH", "LANG", "LC_ALL", "TZ"}));
  EXPECT_EQ(t.limits.core, 0u);
  EXPECT_FALSE(t.limits.memory);
  auto none = spec_of("[tenants.t]\nhost_functions = []\n[tenants.t.environment]\ninherit = []\n");
  ASSERT_TRUE(none.tenants[0].host_functions);
  EXPECT_TRUE(none.tenants[0].host_functions->empty());
  EXPECT_TRUE(none.tenants[0].environment.inherit.empty());
}

TEST(LoaderRules, TenantsKeepFileOrder) {
  auto s = spec_of("[tenants.zed]\n[tenants.alpha]\n[tenants.mid]\n");
  ASSERT_EQ(s.tenants.size(), 3u);
  EXPECT_EQ(s.tenants[0].name, "zed");
  EXPECT_EQ(s.tenants[1].name, "alpha");
  EXPECT_EQ(s.tenants[2].name, "mid");
}

TEST(LoaderRules, TenantValues) {
  EXPECT_EQ(problems("[tenants.a]\npython = \"\"\npython_version = \"3\"\n"),
            (strings{"t.toml:2:10: tenants.a.python: must not be empty",
                     "t.toml:3:18: tenants.a.python_version: invalid python_version \"3\": "
                     "expected \"MAJOR.MINOR\" like \"3.11\""}));
  EXPECT_EQ(problems("[tenants.a]\npython_version = \"3.6\"\n"),
            strings{"t.toml:2:18: tenants.a.python_version: python_version \"3.6\" is not "
                    "supported (3.8 or newer)"});
  EXPECT_EQ(problems("[tenants.a]\npython_version = \"3.x\"\n"),
            strings{"t.toml:2:18: tenants.a.python_version: invalid python_version \"3.x\": "
                    "expected \"MAJOR.MINOR\" like \"3.11\""});
  EXPECT_EQ(problems("[tenants.a]\nhost_functions = [\"ok\", \"\"]\n"),
            strings{"t.toml:2:25: tenants.a.host_functions[1]: must not be empty"});
}

TEST(LoaderRules, TenantLimits) {
  EXPECT_EQ(problems(R"([tenants.a.limits]
memory = "512KiB"
cpu_seconds = 0
open_files = 8
processes = 0
file_size = 0
core = 0
)"),
            (strings{"t.toml:2:10: tenants.a.limits.memory: must be at least 1MiB, got 512KiB",
                     "t.toml:3:15: tenants.a.limits.cpu_seconds: must be at least 1, got 0",
                     "t.toml:4:14: tenants.a.limits.open_files: must be at least 16, got 8",
                     "t.toml:5:13: tenants.a.limits.processes: must be at least 1, got 0"}));
}

TEST(LoaderRules, AWrongTypeIsOneProblem) {
  EXPECT_EQ(problems("[tenants.a.limits]\ncpu_seconds = \"60\"\nmemory = \"lots\"\n"),
            (strings{"t.toml:2:15: tenants.a.limits.cpu_seconds: expected an integer, got string",
                     "t.toml:3:10: tenants.a.limits.memory: invalid size \"lots\": expected a "
                     "number of bytes, or a number and a unit (B, KiB, MiB, GiB, TiB, KB, MB, GB, "
                     "TB), like \"512MiB\""}));
  // No follow-up problem from the default the key kept.
  EXPECT_EQ(problems("[pools.a]\n[supervisors.s]\nchildren = \"a\"\n"),
            strings{"t.toml:3:12: supervisors.s.children: expected an array of strings, got "
                    "string"});
  EXPECT_EQ(problems("[tenants.a]\nvenv = 1\n[tenants.b.venv]\npath = 2\n"),
            (strings{"t.toml:2:8: tenants.a.venv: expected a table, got integer",
                     "t.toml:4:8: tenants.b.venv.path: expected a string, got integer"}));
  EXPECT_EQ(problems("[pools.a]\nsize = 1\nmin_ready = 1.5\n"),
            strings{"t.toml:3:13: pools.a.min_ready: expected an integer, got float"});
}

TEST(LoaderRules, SandboxPathsNeedTheSandbox) {
  EXPECT_EQ(problems("[tenants.a]\nwork_dir = \"/w\"\nread_only = [\"/r\"]\n"),
            (strings{"t.toml:2:12: tenants.a.work_dir: work_dir needs sandbox = \"bwrap\"",
                     "t.toml:3:13: tenants.a.read_only: read_only needs sandbox = \"bwrap\""}));
  EXPECT_TRUE(problems("[tenants.a]\nsandbox = \"bwrap\"\nwork_dir = \"/w\"\nread_only = [\"/r\"]\n").empty());
}

TEST(LoaderRules, TenantSandboxAndEnvironment) {
  EXPECT_EQ(problems(R"([tenants.a]
read_only = ["/ok", "rel/dir"]
seccomp_deny = ["ptrace", "bad name"]
[tenants.a.environment]
inherit = ["PATH", "A=B", ""]
set = { "X=Y" = "1" }
)"),
            (strings{"t.toml:2:13: tenants.a.read_only: read_only needs sandbox = \"bwrap\"",
                     "t.toml:2:21: tenants.a.read_only[1]: must be an absolute path, got "
                     "\"rel/dir\"",
                     "t.toml:3:16: tenants.a.seccomp_deny: seccomp_deny needs seccomp = true",
                     "t.toml:3:27: tenants.a.seccomp_deny[1]: invalid syscall name \"bad name\"",
                     "t.toml:5:20: tenants.a.environment.inherit[1]: invalid variable name "
                     "\"A=B\"",
                     "t.toml:5:27: tenants.a.environment.inherit[2]: invalid variable name \"\"",
                     "t.toml:6:17: tenants.a.environment.set.\"X=Y\": invalid variable name "
                     "\"X=Y\""}));
}

TEST(LoaderRules, VenvNeedsAPath) {
  EXPECT_EQ(problems("[tenants.a.venv]\npython = \"python3\"\n"),
            strings{"t.toml:1:1: tenants.a.venv.path: a venv needs a path"});
  EXPECT_EQ(problems("[tenants.a.venv]\npath = \"v\"\npython = \"\"\nrequirements = [\"\"]\n"),
            (strings{"t.toml:3:10: tenants.a.venv.python: must not be empty",
                     "t.toml:4:17: tenants.a.venv.requirements[0]: must not be empty"}));
}

TEST(LoaderRules, RelativePathsResolveAgainstTheFilesDirectory) {
  auto r = load_config_string("[tenants.a]\nsandbox = \"bwrap\"\nwork_dir = \"../w/./x\"\n[tenants.a.venv]\npath = "
                              "\"/abs/venv/\"\n",
                              "x.toml", "/etc/pyvisor");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r.spec->tenants[0].sandbox.work_dir, "/etc/w/x");
  EXPECT_EQ(r.spec->tenants[0].venv->path, "/abs/venv/");
  // No base directory: the current one.
  auto c = load_config_string("[tenants.a.venv]\npath = \"v\"\n");
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c.spec->tenants[0].venv->path, (std::filesystem::current_path() / "v").string());
}

TEST(LoaderRules, VenvAndPythonTogether) {
  auto s = spec_of("[tenants.a]\npython = \"python3.12\"\n[tenants.a.venv]\npath = \"/v\"\n");
  EXPECT_EQ(s.tenants[0].python, "python3.12");
  ASSERT_TRUE(s.tenants[0].venv);
}

} // namespace
} // namespace pyvisor::config_test
