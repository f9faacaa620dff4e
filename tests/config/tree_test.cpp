// The supervision tree of a config: names, duplicates, children, cycles, root_children.
#include "config_test_util.hpp"

namespace pyvisor::config_test {
namespace {

using namespace std::chrono_literals;

TEST(Tree, NestedSupervisorsMapOntoTheSpec) {
  auto s = spec_of(R"(
[supervisor]
strategy = "one_for_all"
[supervisor.backoff]
base = "1s"
cap = "10s"
[pools.web]
[pools.db]
[pools.cache]
[supervisors.app]
strategy = "rest_for_one"
intensity = 5
period = "30s"
children = ["web", "backend"]
[supervisors.app.backoff]
cap = "20s"
[supervisors.backend]
children = ["db"]
)");
  ASSERT_EQ(s.supervisors.size(), 2u);
  const auto& app = s.supervisors[0];
  EXPECT_EQ(app.name, "app");
  EXPECT_EQ(app.strategy, restart_strategy::rest_for_one);
  EXPECT_EQ(app.intensity, 5);
  EXPECT_EQ(app.period, 30s);
  EXPECT_EQ(app.children, (strings{"web", "backend"}));
  ASSERT_TRUE(app.backoff);
  EXPECT_EQ(app.backoff->base, 1s);  // from [supervisor.backoff]
  EXPECT_EQ(app.backoff->cap, 20s);
  const auto& backend = s.supervisors[1];
  EXPECT_FALSE(backend.strategy);
  EXPECT_FALSE(backend.intensity);
  EXPECT_FALSE(backend.period);
  EXPECT_FALSE(backend.backoff);
  EXPECT_EQ(root_children(s), (strings{"cache", "app"}));
}

TEST(Tree, RootChildrenAreInDeclarationOrderPoolsFirst) {
  auto s = spec_of("[supervisors.z]\nchildren = [\"p2\"]\n[pools.p3]\n[pools.p2]\n[pools.p1]\n"
                   "[supervisors.y]\nchildren = [\"p1\"]\n");
  EXPECT_EQ(root_children(s), (strings{"p3", "z", "y"}));
  EXPECT_TRUE(root_children(runtime_spec{}).empty());
}

TEST(Tree, NamesAndTheReservedRoot) {
  EXPECT_EQ(problems("[pools.root]\n[supervisors.root]\nchildren = [\"x\"]\n[pools.x]\n"),
            (strings{"t.toml:1:1: pools.root: the name 'root' is reserved (the implicit root "
                     "supervisor)",
                     "t.toml:2:1: supervisors.root: the name 'root' is reserved (the implicit "
                     "root supervisor)",
                     "t.toml:2:1: supervisors.root: duplicate name 'root': a pool has it too"}));
  EXPECT_EQ(problems("[tenants.\"a.b\"]\n[tenants.root]\n"),
            strings{"t.toml:1:1: tenants.\"a.b\": invalid name 'a.b': use letters, digits, '_' "
                    "and '-'"});
  spec_of("[pools.Web_1-x]\n");
}

TEST(Tree, PoolAndSupervisorWithOneName) {
  EXPECT_EQ(problems("[pools.web]\n[pools.x]\n[supervisors.web]\nchildren = [\"x\"]\n"),
            strings{"t.toml:3:1: supervisors.web: duplicate name 'web': a pool has it too"});
}

TEST(Tree, ChildrenRules) {
  EXPECT_EQ(problems(R"([pools.web]
[pools.db]
[supervisors.a]
children = ["web", "db", "web"]
[supervisors.b]
children = ["db", "wbe"]
[supervisors.c]
children = []
[supervisors.d]
)"),
            (strings{
              "t.toml:4:26: supervisors.a.children[2]: child 'web' is listed twice",
              "t.toml:6:13: supervisors.b.children[0]: 'db' is already a child of supervisor 'a'",
              "t.toml:6:19: supervisors.b.children[1]: unknown child 'wbe': no pool or "
              "supervisor has that name (did you mean 'web'?)",
              "t.toml:8:12: supervisors.c.children: a supervisor needs at least one child",
              "t.toml:9:1: supervisors.d.children: a supervisor needs at least one child",
            }));
}

TEST(Tree, ElementsKeepTheirIndexAfterABadOne) {
  EXPECT_EQ(problems("[pools.p]\n[supervisors.a]\nchildren = [1, \"a\", \"q\"]\n"),
            (strings{"t.toml:3:13: supervisors.a.children[0]: expected a string, got integer",
                     "t.toml:3:16: supervisors.a.children[1]: supervisor cycle: a -> a",
                     "t.toml:3:21: supervisors.a.children[2]: unknown child 'q': no pool or "
                     "supervisor has that name"}));
}

TEST(Tree, Cycles) {
  EXPECT_EQ(problems("[supervisors.a]\nchildren = [\"b\"]\n[supervisors.b]\nchildren = [\"a\"]\n"),
            strings{"t.toml:4:13: supervisors.b.children[0]: supervisor cycle: a -> b -> a"});
  EXPECT_EQ(problems("[supervisors.a]\nchildren = [\"a\"]\n"),
            strings{"t.toml:2:13: supervisors.a.children[0]: supervisor cycle: a -> a"});
  EXPECT_EQ(problems(R"([pools.p]
[supervisors.top]
children = ["p", "x"]
[supervisors.x]
children = ["y"]
[supervisors.y]
children = ["z"]
[supervisors.z]
children = ["x"]
)"),
            (strings{"t.toml:9:13: supervisors.z.children[0]: 'x' is already a child of "
                     "supervisor 'top'",
                     "t.toml:9:13: supervisors.z.children[0]: supervisor cycle: x -> y -> z -> x"}));
}

} // namespace
} // namespace pyvisor::config_test
