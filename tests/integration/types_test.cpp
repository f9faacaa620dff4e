// The full type mapping (issue 3): every value crosses host -> Python -> host unchanged.
#include <cmath>
#include <cstring>
#include <limits>
#include <set>

#include "pyvisor/types.hpp"
#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

class types_test : public runtime_test {
protected:
  void SetUp() override {
    runtime_test::SetUp();
    py_.emplace(must_spawn(options()));
  }
  void TearDown() override {
    py_.reset();
    runtime_test::TearDown();
  }
  /// Sends `x` in, has Python check its type, and returns it back.
  value echo(const arg& x, const std::string& expect_type) {
    auto r = py_->eval("assert type(v).__name__ == t, (type(v).__name__, t)\nreturn v",
                       {{"v", x}, {"t", expect_type}});
    if (!r) {
      ADD_FAILURE() << expect_type << ": " << r.error().to_string();
      return {};
    }
    return *r;
  }
  std::optional<interpreter> py_;
};

std::uint64_t bits(double d) {
  std::uint64_t b;
  std::memcpy(&b, &d, 8);
  return b;
}

} // namespace

TEST_F(types_test, integers_at_every_width_boundary) {
  const std::vector<std::int64_t> boundaries{
    0, 1, 127, 128, 255, 256, 65535, 65536, -1, -32, -33, -128, -129, -32768, -32769,
    2147483647, 2147483648, -2147483648LL, -2147483649LL, std::numeric_limits<std::int64_t>::max(),
    std::numeric_limits<std::int64_t>::min()};
  for (std::int64_t v : boundaries)
    EXPECT_EQ(echo(v, "int").as<std::int64_t>(), v) << v;
  auto umax = std::numeric_limits<std::uint64_t>::max();
  EXPECT_EQ(echo(umax, "int").as<std::uint64_t>(), umax);
  EXPECT_EQ(echo(std::uint64_t{1} << 63, "int").as<std::uint64_t>(), std::uint64_t{1} << 63);
  // Beyond 64 bits: bigint both ways, checked against Python's own arithmetic.
  for (const char* dec : {"18446744073709551616", "-18446744073709551616", "-9223372036854775809",
                          "1606938044258990275541962092341162602522202993782792835301376",
                          "-1606938044258990275541962092341162602522202993782792835301376"}) {
    auto b = *bigint::from_string(dec);
    auto r = py_->eval("assert v == int(s), (v, s)\nreturn v", {{"v", b}, {"s", dec}});
    ASSERT_TRUE(r) << dec << ": " << r.error().to_string();
    EXPECT_EQ(r->as<bigint>().to_string(), dec);
  }
  auto p = py_->eval("return [2**64, -2**64, 2**200, -2**200, 2**63, -2**63]");
  ASSERT_TRUE(p);
  auto v = p->as<std::vector<bigint>>();
  EXPECT_EQ(v[0].to_string(), "18446744073709551616");
  EXPECT_EQ(v[3].to_string(), "-1606938044258990275541962092341162602522202993782792835301376");
  EXPECT_EQ(v[4].to_uint64(), std::uint64_t{1} << 63);
  EXPECT_EQ(v[5].to_int64(), std::numeric_limits<std::int64_t>::min());
}

TEST_F(types_test, floats_bit_exact) {
  for (double d : {0.0, -0.0, 1.5, 2.0, -3.0, 1e308, std::numeric_limits<double>::max(),
                   std::numeric_limits<double>::min(), std::numeric_limits<double>::denorm_min(),
                   std::numeric_limits<double>::infinity(), -std::numeric_limits<double>::infinity(),
                   std::numeric_limits<double>::quiet_NaN()}) {
    auto back = echo(d, "float").as<double>();
    if (std::isnan(d))
      EXPECT_TRUE(std::isnan(back));
    else
      EXPECT_EQ(bits(back), bits(d)) << d;
  }
}

TEST_F(types_test, strings_bytes_and_bytearray) {
  std::string s = "ascii, é, ✓, 😀, \x01\x7f";
  EXPECT_EQ(echo(s, "str").as<std::string>(), s);
  std::vector<char> bin{'\0', '\xff', 'a'};
  EXPECT_EQ(echo(bin, "bytes").as<std::vector<char>>(), bin);
  auto r = py_->eval("return type(b).__name__", {{"b", bin}}, {.bytes_as_bytearray = true});
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::string>(), "bytearray");
}

TEST_F(types_test, containers_tuples_sets) {
  EXPECT_EQ(echo(std::vector<int>{1, 2}, "list").as<std::vector<int>>(), (std::vector<int>{1, 2}));
  std::map<int, std::string> m{{1, "a"}, {2, "b"}};
  EXPECT_EQ((echo(m, "dict").as<std::map<int, std::string>>()), m);
  auto t = echo(pyvisor::tuple<int, std::string>{1, "x"}, "tuple");
  EXPECT_STREQ(t.type_name(), "tuple");
  auto tt = t.as<pyvisor::tuple<int, std::string>>();
  EXPECT_EQ(tt.get<0>(), 1);
  EXPECT_EQ(tt.get<1>(), "x");
  auto as_std = t.as<std::tuple<int, std::string>>();  // std types convert from tuples too
  EXPECT_EQ(std::get<1>(as_std), "x");
  auto st = echo(pyvisor::set<int>{{3, 1, 2}}, "set").as<std::set<int>>();
  EXPECT_EQ(st, (std::set<int>{1, 2, 3}));
  auto fs = echo(pyvisor::frozenset<std::string>{{"a"}}, "frozenset");
  EXPECT_STREQ(fs.type_name(), "frozenset");
  // Tuples as dict keys, nested tuples in lists, all the way back.
  auto k = py_->eval("return {(1, 2): [(3,), {4}]}");
  ASSERT_TRUE(k) << k.error().to_string();
  auto km = k->as<std::map<std::vector<int>, std::vector<std::vector<int>>>>();
  EXPECT_EQ(km.at({1, 2}), (std::vector<std::vector<int>>{{3}, {4}}));
  auto round = py_->eval("return v == {(1, 2): [(3,), {4}]}", {{"v", *k}});
  ASSERT_TRUE(round) << round.error().to_string();
  EXPECT_TRUE(round->as<bool>());
}

TEST_F(types_test, opaque_host_handles_come_back_identical) {
  host_handle h{std::string("\x00\x01secret-token", 14)};
  auto r = py_->eval("import pyvisor\nassert isinstance(h, pyvisor.HostHandle)\nreturn [h, h]", {{"h", h}});
  ASSERT_TRUE(r) << r.error().to_string();
  auto v = r->as<std::vector<host_handle>>();
  ASSERT_EQ(v.size(), 2u);
  EXPECT_EQ(v[0], h);
}

TEST_F(types_test, unserializable_names_type_and_path_and_set_encoder_converts) {
  auto r = py_->eval("import datetime\nreturn [1, 2, 3, {'k': datetime.date(2026, 11, 21)}]");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::unserializable);
  EXPECT_NE(r.error().message.find("date"), std::string::npos) << r.error().message;
  EXPECT_NE(r.error().message.find("result[3][\"k\"]"), std::string::npos) << r.error().message;
  auto e = py_->make_env();
  ASSERT_TRUE(e);
  ASSERT_TRUE(e->eval("import datetime, pyvisor\npyvisor.set_encoder(lambda o: o.isoformat() "
                      "if isinstance(o, datetime.date) else None)"));
  auto ok = e->eval("return {'k': datetime.date(2026, 11, 21)}");
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ((ok->as<std::map<std::string, std::string>>().at("k")), "2026-11-21");
}

TEST_F(types_test, invalid_utf8_from_the_host_is_a_clear_error_and_harmless) {
  auto r = py_->eval("return s", {{"s", std::string("bad \xff\xfe utf8")}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument) << r.error().to_string();
  EXPECT_EQ(py_->eval("return 'fine'")->as<std::string>(), "fine");
}

// ---- issue 7, defect 1: nested tuples around a large payload cost O(payload) host memory ----
// Each level's ext payload used to be decoded again with copying, on the I/O thread: 8 MiB
// inside 100 nested tuples cost ~800 MiB of host memory. Now every payload is decoded once,
// by reference into the frame's own buffer.
#include <fstream>

namespace {

std::size_t host_rss_bytes() {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stoul(line.substr(6)) * 1024;
  return 0;
}

} // namespace

TEST_F(types_test, nested_tuples_around_8_mib_keep_host_memory_bounded) {
  constexpr std::size_t size = std::size_t{8} << 20;
  auto rss0 = host_rss_bytes();
  auto r = py_->eval("t = b'x' * (8 << 20)\nfor _ in range(100):\n    t = (t,)\nreturn t");
  ASSERT_TRUE(r) << r.error().to_string();
  auto rss1 = host_rss_bytes();
  auto growth = rss1 > rss0 ? rss1 - rss0 : 0;
  EXPECT_LT(growth, std::size_t{200} << 20) << "host RSS grew by " << (growth >> 20) << " MiB";
  // And the value converts: 100 tuples of one, then the bytes.
  EXPECT_EQ(r->type_name(), std::string("tuple"));
  const msgpack::object* o = &r->plain();
  for (int i = 0; i < 100; ++i) {
    ASSERT_EQ(o->type, msgpack::type::ARRAY) << i;
    ASSERT_EQ(o->via.array.size, 1u) << i;
    o = &o->via.array.ptr[0];
  }
  ASSERT_EQ(o->type, msgpack::type::BIN);
  EXPECT_EQ(o->via.bin.size, size);
  auto outer = r->to<pyvisor::tuple<msgpack::object>>();
  ASSERT_TRUE(outer) << outer.error().to_string();
  EXPECT_EQ(outer->get<0>().type, msgpack::type::ARRAY);
  // Passed back, it is still 100 nested tuples around the same bytes.
  auto back = py_->eval("u = v\nfor _ in range(100):\n    assert type(u) is tuple and len(u) == 1\n"
                        "    u = u[0]\nreturn u == b'x' * (8 << 20)", {{"v", *r}});
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_TRUE(back->as<bool>());
}
