// The configs shipped in config/: the documented default and every example load without a
// problem, the default is runnable as it is, and each survives to_toml -> load unchanged.
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "config_test_util.hpp"

namespace pyvisor::config_test {
namespace {

using namespace std::chrono_literals;

const std::string config_dir = PYVISOR_CONFIG_DIR;

runtime_spec load_clean(const std::string& path) {
  auto r = load_config(path);
  EXPECT_TRUE(r.ok()) << path << ": " << ::testing::PrintToString(lines(r.problems));
  return r.spec ? *r.spec : runtime_spec{};
}

void expect_reloads_equal(const runtime_spec& s) {
  for (bool all : {false, true}) {
    auto text = to_toml(s, all);
    auto r = load_config_string(text, "rewritten.toml", "/");
    ASSERT_TRUE(r.ok()) << text << ::testing::PrintToString(lines(r.problems));
    EXPECT_EQ(to_toml(*r.spec, true), to_toml(s, true));
    EXPECT_EQ(to_toml(*r.spec, all), text);
  }
}

TEST(Shipped, DefaultConfigLoadsClean) {
  auto s = load_clean(config_dir + "/pyvisor.toml");
  ASSERT_EQ(s.tenants.size(), 1u);
  ASSERT_EQ(s.pools.size(), 1u);
  ASSERT_EQ(s.supervisors.size(), 1u);
  EXPECT_TRUE(validate(s).empty());
}

TEST(Shipped, DefaultConfigIsRunnableOnAPlainHost) {
  auto s = load_clean(config_dir + "/pyvisor.toml");
  ASSERT_EQ(s.tenants.size(), 1u);
  const auto& t = s.tenants[0];
  EXPECT_EQ(t.python, "/usr/bin/python3");
  EXPECT_FALSE(t.venv);
  EXPECT_TRUE(t.identity.empty());
  EXPECT_EQ(t.sandbox.kind, sandbox_kind::none);
  EXPECT_FALSE(t.sandbox.seccomp);
  EXPECT_FALSE(t.limits.memory);
  EXPECT_EQ(s.pools[0].tenant, t.name);
  EXPECT_TRUE(s.pools[0].init_file.empty());
  EXPECT_EQ(root_children(s), strings{"app"});
  // The main job: `pyvisor serve config/pyvisor.toml` serves pool `default` (2 workers) on the
  // loopback port the README names, without authentication.
  EXPECT_EQ(s.pools[0].options.name, "default");
  EXPECT_EQ(s.pools[0].options.workers, 2u);
  EXPECT_EQ(s.runtime.http_listen, "127.0.0.1:4270");
  EXPECT_TRUE(s.gateway.tokens_file.empty());
  EXPECT_EQ(s.runtime.shutdown_grace, 30s);
}

TEST(Shipped, DefaultConfigShowsTheDefaults) {
  // Every value the shipped file spells out is the struct default (only the example tenant's
  // python, its pool's tenant and init script, and the tree differ).
  auto s = load_clean(config_dir + "/pyvisor.toml");
  EXPECT_EQ(to_toml(s), R"([tenants.default]
python = "/usr/bin/python3"

[pools.default]
tenant = "default"
init_script = '''
import json
'''

[supervisors.app]
children = ["default"]
)");
}

TEST(Shipped, DefaultConfigReloadsEqual) {
  expect_reloads_equal(load_clean(config_dir + "/pyvisor.toml"));
}

TEST(Shipped, EveryExampleLoadsCleanAndReloadsEqual) {
  int count = 0;
  for (const auto& entry : std::filesystem::directory_iterator(config_dir + "/examples")) {
    if (entry.path().extension() != ".toml")
      continue;
    ++count;
    SCOPED_TRACE(entry.path().string());
    expect_reloads_equal(load_clean(entry.path().string()));
  }
  EXPECT_GE(count, 2);
}

TEST(Shipped, NestedExampleTree) {
  auto s = load_clean(config_dir + "/examples/nested.toml");
  EXPECT_EQ(root_children(s), (strings{"metrics", "app"}));
  ASSERT_EQ(s.supervisors.size(), 2u);
  EXPECT_EQ(s.supervisors[1].name, "api");
  EXPECT_EQ(s.supervisors[1].strategy, restart_strategy::rest_for_one);
  ASSERT_TRUE(s.supervisors[1].backoff);
  EXPECT_EQ(s.supervisors[1].backoff->cap, 5s);
  EXPECT_EQ(s.supervisors[1].backoff->base, 100ms);
  const auto& web = s.pools.at(1);
  EXPECT_EQ(web.options.name, "web");
  EXPECT_EQ(web.options.workers, 2u);
  EXPECT_EQ(web.options.autoscale.min_workers, 2u);
  EXPECT_EQ(web.options.autoscale.max_workers, 8u);
  EXPECT_EQ(web.options.worker.spawn, spawn_mode::fork_server);
}

std::string read_file(const std::string& path) {
  std::ifstream in{path};
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

/// Every key to_toml writes for a spec that sets them all, as "section: key".
std::set<std::pair<std::string, std::string>> every_key() {
  std::set<std::pair<std::string, std::string>> keys;
  std::istringstream in{to_toml(full_spec(), true)};
  std::string line, section;
  while (std::getline(in, line)) {
    if (!line.empty() && line[0] == '[')
      section = line;
    else if (auto eq = line.find(" = "); eq != std::string::npos && line[0] != ' ')
      keys.emplace(section, line.substr(0, eq));
  }
  return keys;
}

TEST(Shipped, DefaultConfigDocumentsEveryKey) {
  const auto text = read_file(config_dir + "/pyvisor.toml");
  auto keys = every_key();
  EXPECT_GT(keys.size(), 80u);
  for (const auto& [section, key] : keys) {
    bool shown = text.find("\n" + key + " = ") != std::string::npos ||
                 text.find("# " + key + " = ") != std::string::npos;
    EXPECT_TRUE(shown) << section << " " << key;
  }
}

TEST(Shipped, ReferenceDocumentsEveryKey) {
  const auto text = read_file(config_dir + "/../docs/configuration.md");
  for (const auto& [section, key] : every_key()) {
    bool shown = text.find("`" + key + "`") != std::string::npos ||
                 text.find("." + key + "`") != std::string::npos;
    EXPECT_TRUE(shown) << section << " " << key;
  }
}

TEST(Shipped, RelativeInitFileNextToTheConfig) {
  auto r = load_config(data_dir + "/relative_init.toml");
  ASSERT_TRUE(r.ok()) << ::testing::PrintToString(lines(r.problems));
  EXPECT_EQ(r.spec->pools.at(0).init_file, data_dir + "/init.py");
}

} // namespace
} // namespace pyvisor::config_test
