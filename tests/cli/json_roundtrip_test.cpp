// The lossless rendering (docs/json.md) through a real interpreter: JSON -> msgpack (--var) ->
// Python -> msgpack -> JSON gives the same JSON, and Python sees the documented types; the two
// defects of the old rendering (a NaN that read as a string, dict keys 1 and "1" printed as
// one JSON key twice) stay fixed.

#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "cli_test_util.hpp"

namespace {

using pyvisor::cli_test::describe;
using pyvisor::cli_test::pyvisor;

struct sample {
  std::string json;         ///< canonical rendering
  std::string python_type;  ///< type(x).__name__ in Python
};

// Sets hold small ints only: their iteration order in Python is the one written here.
const std::vector<sample> samples = {
    {"null", "NoneType"},
    {"true", "bool"},
    {"0", "int"},
    {"-9223372036854775808", "int"},
    {"18446744073709551615", "int"},
    {R"({"$int":"18446744073709551616"})", "int"},
    {R"({"$int":"-1606938044258990275541962092341162602522202993782792835301376"})", "int"},
    {"1.0", "float"},
    {"-0.0", "float"},
    {"0.1", "float"},
    {"1e+300", "float"},
    {R"({"$float":"nan"})", "float"},
    {R"({"$float":"inf"})", "float"},
    {R"({"$float":"-inf"})", "float"},
    {R"("NaN")", "str"},
    {R"("é \"$int\" \n")", "str"},
    {R"({"$bytes":""})", "bytes"},
    {R"({"$bytes":"AP8A/w=="})", "bytes"},
    {"[]", "list"},
    {R"([1,[2,[3]],"x"])", "list"},
    {R"({"$tuple":[]})", "tuple"},
    {R"({"$tuple":[1,{"$tuple":[2]},[{"$tuple":[]}]]})", "tuple"},
    {R"({"$set":[1,2,3]})", "set"},
    {R"({"$frozenset":[7]})", "frozenset"},
    {R"({"$set":[{"$frozenset":[1]},{"$tuple":[1,2]}]})", "set"},
    {"{}", "dict"},
    {R"({"b":1,"a":{"c":[true,null]}})", "dict"},
    {R"({"$map":[[1,"a"],["1","b"]]})", "dict"},
    {R"({"$map":[["$bytes","not bytes"],["x",1]]})", "dict"},
    {R"({"$map":[[{"$tuple":[1,2]},{"$frozenset":[3]}],[null,0],[2.5,1],[{"$int":"36893488147419103232"},2]]})", "dict"},
    {R"({"outer":{"$map":[[true,{"$float":"nan"}]]}})", "dict"},
    {R"({"$ext":5,"$data":"aGFuZGxl"})", "HostHandle"},
};

TEST(JsonRoundTrip, ThroughPythonGivesTheSameJson) {
  std::string all = "[";
  std::string types = "[";
  for (const sample& s : samples) {
    all += (all.size() > 1 ? "," : "") + s.json;
    types += std::string(types.size() > 1 ? "," : "") + "\"" + s.python_type + "\"";
  }
  all += "]";
  types += "]";
  // As --var: the init script and the code both see it.
  auto r = pyvisor({"eval", "--var", "xs=" + all, "return xs"});
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, all + "\n");
  r = pyvisor({"eval", "--var", "xs=" + all, "return [type(x).__name__ for x in xs]"});
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, types + "\n");
  // Each value alone (a top-level tag, not only nested ones), for the first few that differ in
  // kind; and through the init script's namespace.
  for (const char* one : {R"({"$tuple":[1,2]})", R"({"$float":"nan"})", R"({"$map":[[1,2]]})",
                          R"({"$bytes":"AA=="})", R"({"$int":"-18446744073709551617"})"}) {
    r = pyvisor({"eval", "--var", std::string("x=") + one, "--init-script", "y = x", "return y"});
    EXPECT_EQ(r.status, 0) << one << "\n" << describe(r);
    EXPECT_EQ(r.out, std::string(one) + "\n");
  }
}

TEST(JsonRoundTrip, PythonValuesKeepTheirTypes) {
  // Values made in Python, rendered, read back in a second interpreter: equal to the original.
  const std::string make =
      "import math\n"
      "return [{1: 'a', '1': 'b'}, float('nan'), 'NaN', (1, (2,)), {3}, frozenset(), b'\\x00', "
      "2**70, -2**70, 1.0, 1, {'$k': 1}, {(1, 2): None}]";
  auto r = pyvisor({"eval", make});
  ASSERT_EQ(r.status, 0) << describe(r);
  const std::string rendered = r.out.substr(0, r.out.size() - 1);
  EXPECT_EQ(rendered,
            R"([{"$map":[[1,"a"],["1","b"]]},{"$float":"nan"},"NaN",{"$tuple":[1,{"$tuple":[2]}]},)"
            R"({"$set":[3]},{"$frozenset":[]},{"$bytes":"AA=="},{"$int":"1180591620717411303424"},)"
            R"({"$int":"-1180591620717411303424"},1.0,1,{"$map":[["$k",1]]},{"$map":[[{"$tuple":[1,2]},null]]}])");
  r = pyvisor({"eval", "--var", "got=" + rendered,
               "import math\n"
               "want = [{1: 'a', '1': 'b'}, 'nan', 'NaN', (1, (2,)), {3}, frozenset(), b'\\x00', "
               "2**70, -2**70, 1.0, 1, {'$k': 1}, {(1, 2): None}]\n"
               "assert math.isnan(got[1]) and isinstance(got[1], float)\n"
               "got[1] = 'nan'\n"
               "assert type(got[9]) is float and type(got[10]) is int\n"
               "return got == want and [type(g) is type(w) for g, w in zip(got, want)] == [True] * 13"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "true\n");
}

TEST(JsonRoundTrip, TheOldDefectsAreGone) {
  // Keys 1 and "1": one JSON object with the key "1" twice, before; now a $map, valid JSON
  // whose parse keeps both entries.
  auto r = pyvisor({"eval", "return {1: 'int', '1': 'str'}"});
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "{\"$map\":[[1,\"int\"],[\"1\",\"str\"]]}\n");
  const auto doc = nlohmann::json::parse(r.out);
  EXPECT_EQ(doc["$map"].size(), 2u);
  // NaN and the string "NaN" used to print the same.
  r = pyvisor({"eval", "return [float('nan'), 'NaN', float('inf'), 'Infinity', -float('inf')]"});
  ASSERT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, R"([{"$float":"nan"},"NaN",{"$float":"inf"},"Infinity",{"$float":"-inf"}])" "\n");
}

} // namespace
