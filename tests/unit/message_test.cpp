#include "protocol/message.hpp"

#include <gtest/gtest.h>

using namespace pyvisor;
using namespace pyvisor::protocol;

namespace {

std::string body_of(const std::string& frame) {
  return frame.substr(4);
}

template <class T>
std::string pack(const T& x) {
  msgpack::sbuffer b;
  msgpack::pack(b, x);
  return {b.data(), b.size()};
}

message must_decode(const std::string& body) {
  auto d = decode(body, limits{});
  if (auto e = std::get_if<std::string>(&d))
    ADD_FAILURE() << *e;
  return std::get<message>(std::move(d));
}

} // namespace

TEST(message, code_request_round_trip) {
  vars v{{"x", 3}, {"name", "abc"}, {"xs", std::vector<int>{1, 2}}};
  auto f = encode_code_request(7, "eval", "return x", v, "<f>", 3);
  ASSERT_GE(f.size(), 4u);
  std::uint32_t len = (std::uint8_t(f[0]) << 24) | (std::uint8_t(f[1]) << 16) |
                      (std::uint8_t(f[2]) << 8) | std::uint8_t(f[3]);
  EXPECT_EQ(len, f.size() - 4);
  auto m = must_decode(body_of(f));
  EXPECT_EQ(m.kind, kind::request);
  EXPECT_EQ(m.id, 7u);
  EXPECT_EQ(m.op, "eval");
  EXPECT_EQ(map_string(m.payload, "code"), "return x");
  EXPECT_EQ(map_string(m.payload, "file"), "<f>");
  auto vs = map_get(m.payload, "vars");
  ASSERT_NE(vs, nullptr);
  auto vm = vs->as<std::map<std::string, msgpack::object>>();
  EXPECT_EQ(vm["x"].as<int>(), 3);
  EXPECT_EQ(vm["name"].as<std::string>(), "abc");
  EXPECT_EQ(vm["xs"].as<std::vector<int>>(), (std::vector<int>{1, 2}));
  EXPECT_EQ(map_get(m.payload, "line")->as<int>(), 3);
}

TEST(message, notifications) {
  auto c = must_decode(body_of(encode_cancel(42)));
  EXPECT_EQ(c.kind, kind::notification);
  EXPECT_EQ(c.op, "cancel");
  EXPECT_EQ(map_get(c.payload, "id")->as<std::uint64_t>(), 42u);
  auto s = must_decode(body_of(encode_shutdown()));
  EXPECT_EQ(s.op, "shutdown");
}

TEST(message, rejects_malformed_bodies) {
  limits lim;
  EXPECT_TRUE(std::holds_alternative<std::string>(decode(pack(1), lim)));
  EXPECT_TRUE(std::holds_alternative<std::string>(decode(pack(std::vector<int>{1, 2, 3}), lim)));
  EXPECT_TRUE(std::holds_alternative<std::string>(
    decode(pack(std::make_tuple(3, 1, std::string("x"), 0)), lim)));  // kind 3
  EXPECT_TRUE(std::holds_alternative<std::string>(
    decode(pack(std::make_tuple(1, -1, std::string("x"), 0)), lim)));  // negative id
  EXPECT_TRUE(std::holds_alternative<std::string>(
    decode(pack(std::make_tuple(1, 1, 5, 0)), lim)));  // op not a str
  EXPECT_TRUE(std::holds_alternative<std::string>(decode(std::string("\x94\x01", 2), lim)));
}

TEST(message, parse_ok_and_error_responses) {
  auto ok = must_decode(pack(std::make_tuple(1, 5, std::string("eval"),
                                             std::map<std::string, int>{{"ok", 36}})));
  auto r = parse_response(ok).result;
  ASSERT_TRUE(r);
  EXPECT_EQ(r->as<int>(), 36);

  std::map<std::string, msgpack::type::variant> err;
  msgpack::sbuffer b;
  msgpack::packer<msgpack::sbuffer> pk(b);
  pk.pack_array(4);
  pk.pack(1);
  pk.pack(6);
  pk.pack(std::string("eval"));
  pk.pack_map(1);
  pk.pack(std::string("error"));
  pk.pack_map(4);
  pk.pack(std::string("code"));
  pk.pack(std::string("syntax_error"));
  pk.pack(std::string("type"));
  pk.pack(std::string("SyntaxError"));
  pk.pack(std::string("message"));
  pk.pack(std::string("invalid syntax"));
  pk.pack(std::string("traceback"));
  pk.pack(std::vector<std::string>{"  File \"<pyvisor>\", line 1\n"});
  auto em = must_decode(std::string(b.data(), b.size()));
  auto e = parse_response(em).result;
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().code, errc::syntax_error);
  EXPECT_EQ(e.error().python_type, "SyntaxError");
  EXPECT_EQ(e.error().message, "invalid syntax");
  ASSERT_EQ(e.error().traceback.size(), 1u);

  auto neither = must_decode(pack(std::make_tuple(1, 5, std::string("eval"), 1)));
  auto n = parse_response(neither).result;
  ASSERT_FALSE(n);
  EXPECT_EQ(n.error().code, errc::protocol_error);
}

TEST(message, value_outlives_message) {
  value v;
  {
    auto m = must_decode(pack(std::make_tuple(1, 5, std::string("eval"),
                                              std::map<std::string, std::string>{{"ok", std::string(1000, 'q')}})));
    auto r = parse_response(m).result;
    ASSERT_TRUE(r);
    v = *r;
  }
  EXPECT_EQ(v.as<std::string>(), std::string(1000, 'q'));
  EXPECT_STREQ(v.type_name(), "str");
  EXPECT_FALSE(v.to<int>());
  EXPECT_EQ(v.to<int>().error().code, errc::type_mismatch);
}

TEST(message, is_response_to_reads_only_the_head) {
  auto response = [](std::uint64_t id) {
    msgpack::sbuffer b;
    msgpack::packer<msgpack::sbuffer> p{b};
    p.pack_array(4);
    p.pack(1);
    p.pack(id);
    p.pack(std::string{"eval"});
    p.pack_map(0);
    return std::string{b.data(), b.size()};
  };
  // Every width msgpack gives an id: fixint, u8, u16, u32, u64.
  for (std::uint64_t id : {std::uint64_t{0}, std::uint64_t{5}, std::uint64_t{127}, std::uint64_t{128},
                           std::uint64_t{255}, std::uint64_t{256}, std::uint64_t{65535},
                           std::uint64_t{65536}, std::uint64_t{1} << 32, ~std::uint64_t{0}}) {
    auto body = response(id);
    EXPECT_TRUE(is_response_to(body, id)) << id;
    EXPECT_FALSE(is_response_to(body, id + 1)) << id;
    auto head = body.size() - 6;  // what follows the id: "eval" (5 bytes) and an empty map
    EXPECT_TRUE(is_response_to(body.substr(0, head), id)) << id;
    if (id >= 128) {  // cut inside the id's bytes
      EXPECT_FALSE(is_response_to(body.substr(0, head - 1), id)) << id;
    }
  }
  // A request or notification with that id, a non-uint id, other shapes, truncation.
  EXPECT_FALSE(is_response_to(pack(std::make_tuple(0, 7, std::string{"host_call"}, 0)), 7));
  EXPECT_FALSE(is_response_to(pack(std::make_tuple(2, 7, std::string{"log"}, 0)), 7));
  EXPECT_FALSE(is_response_to(pack(std::make_tuple(1, -7, std::string{"eval"}, 0)), 7));
  EXPECT_FALSE(is_response_to(pack(std::make_tuple(1, 7, std::string{"eval"})), 7));
  EXPECT_FALSE(is_response_to(std::string{"\x94\x01", 2}, 0));
  EXPECT_FALSE(is_response_to(std::string{"\x94\x01\xcf\x00", 4}, 0));
  EXPECT_FALSE(is_response_to({}, 0));
}
