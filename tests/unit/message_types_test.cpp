// Every message type of the actor interface survives CAF's binary serializer (what caf::io
// uses between nodes), alone and inside a caf::message; bad bytes are refused on load.

#include "protocol/message.hpp"
#include "pyvisor/actor_interface.hpp"
#include "pyvisor/types.hpp"

#include <gtest/gtest.h>

#include <caf/actor_system.hpp>
#include <caf/actor_system_config.hpp>
#include <caf/binary_deserializer.hpp>
#include <caf/binary_serializer.hpp>
#include <caf/message.hpp>

using namespace pyvisor;
using namespace std::chrono_literals;

namespace {

struct config : caf::actor_system_config {
  config() { pyvisor::add_message_types(*this); }
};

class message_types : public ::testing::Test {
protected:
  config cfg_;
  caf::actor_system sys_{cfg_};

  template <class T>
  T round_trip(T x) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys_, buf};
    auto e = sink(x);
    EXPECT_FALSE(e) << sys_.render(e);
    T out{};
    caf::binary_deserializer source{sys_, buf};
    e = source(out);
    EXPECT_FALSE(e) << sys_.render(e);
    return out;
  }

  caf::message round_trip(const caf::message& m) {
    std::vector<char> buf;
    caf::binary_serializer sink{sys_, buf};
    auto copy = m;
    auto e = sink(copy);
    EXPECT_FALSE(e) << sys_.render(e);
    caf::message out;
    caf::binary_deserializer source{sys_, buf};
    e = source(out);
    EXPECT_FALSE(e) << sys_.render(e);
    return out;
  }
};

value make_value(const arg& a) {
  return *value_from_msgpack(a.bytes());
}

} // namespace

TEST_F(message_types, error_round_trips) {
  error e{errc::python_exception, "boom", "ValueError", {"File \"<x>\", line 1", "  raise"}};
  auto back = round_trip(e);
  EXPECT_EQ(back.code, errc::python_exception);
  EXPECT_EQ(back.message, "boom");
  EXPECT_EQ(back.python_type, "ValueError");
  EXPECT_EQ(back.traceback, e.traceback);
}

TEST_F(message_types, value_and_arg_round_trip_with_tuples) {
  auto a = arg::tuple({1, "two", arg::list({3.5, true})});
  auto back_arg = round_trip(a);
  EXPECT_EQ(back_arg.bytes(), a.bytes());
  auto v = make_value(a);
  auto back = round_trip(v);
  auto t = back.to<std::tuple<int, std::string, std::vector<msgpack::object>>>();
  ASSERT_TRUE(t) << t.error().to_string();
  EXPECT_EQ(std::get<0>(*t), 1);
  EXPECT_EQ(std::get<1>(*t), "two");
  EXPECT_STREQ(back.type_name(), "tuple");
}

TEST_F(message_types, requests_round_trip) {
  eval_request er{"return x", {{"x", 41}}, {}, 7};
  er.options.timeout = 250ms;
  er.options.file = "job.py";
  er.options.line = 3;
  auto e2 = round_trip(er);
  EXPECT_EQ(e2.code, "return x");
  ASSERT_EQ(e2.vars.size(), 1u);
  EXPECT_EQ(e2.vars[0].name, "x");
  EXPECT_EQ(e2.vars[0].value.bytes(), arg{41}.bytes());
  EXPECT_EQ(e2.options.timeout, std::optional{250ms});
  EXPECT_EQ(e2.options.file, "job.py");
  EXPECT_EQ(e2.options.line, 3);
  EXPECT_EQ(e2.env, 7u);

  call_request cr{"math.hypot", {3, 4}, {{"k", "v"}}, {}, 0};
  auto c2 = round_trip(cr);
  EXPECT_EQ(c2.name, "math.hypot");
  ASSERT_EQ(c2.args.size(), 2u);
  EXPECT_EQ(c2.args[1].bytes(), arg{4}.bytes());
  EXPECT_FALSE(c2.options.timeout.has_value());

  make_env_request mr;
  mr.vars = {{"a", 1}};
  mr.from = {env_from{3, std::vector<std::string>{"x", "y"}, std::nullopt}};
  mr.timeout = forever;
  auto m2 = round_trip(mr);
  ASSERT_EQ(m2.from.size(), 1u);
  EXPECT_EQ(m2.from[0].env, 3u);
  EXPECT_EQ(m2.from[0].only, (std::optional<std::vector<std::string>>{{"x", "y"}}));
  EXPECT_FALSE(m2.from[0].except.has_value());
  EXPECT_EQ(m2.timeout, std::optional{forever});

  EXPECT_EQ(round_trip(interpreter_state::draining), interpreter_state::draining);
}

TEST_F(message_types, messages_round_trip_by_registered_name) {
  auto m = caf::make_message(eval_atom::value, eval_request{"return 1", {}, {}, 0});
  auto back = round_trip(m);
  ASSERT_TRUE((back.match_elements<eval_atom, eval_request>()));
  EXPECT_EQ(back.get_as<eval_request>(1).code, "return 1");
  auto values = caf::make_message(host_call_atom::value, std::string{"f"},
                                  std::vector<value>{make_value(arg{1}), make_value(arg{"s"})});
  auto vb = round_trip(values);
  ASSERT_TRUE((vb.match_elements<host_call_atom, std::string, std::vector<value>>()));
  EXPECT_EQ(vb.get_as<std::vector<value>>(2)[1].as<std::string>(), "s");
}

TEST_F(message_types, malformed_value_bytes_are_refused_on_load) {
  // A value whose bytes declare an array of 2^32-1 elements in five bytes.
  std::vector<char> buf;
  caf::binary_serializer sink{sys_, buf};
  std::string bad{"\xdd\xff\xff\xff\xff", 5};
  ASSERT_FALSE(sink(bad));
  value out;
  caf::binary_deserializer source{sys_, buf};
  auto e = source(out);
  ASSERT_TRUE(e);
  EXPECT_EQ(to_error(e).code, errc::invalid_argument);
}

TEST(args, from_msgpack_validates_with_the_frame_limits) {
  auto ok = arg::from_msgpack(arg{std::vector<int>{1, 2}}.bytes());
  ASSERT_TRUE(ok);
  auto truncated = arg::from_msgpack(std::string{"\x92\x01", 2});
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().code, errc::invalid_argument);
  auto two_values = arg::from_msgpack(std::string{"\x01\x02", 2});
  ASSERT_FALSE(two_values);
  std::string deep(200, '\x91');
  deep.push_back('\xc0');
  auto too_deep = arg::from_msgpack(deep);
  ASSERT_FALSE(too_deep);
  EXPECT_NE(too_deep.error().message.find("arg::from_msgpack"), std::string::npos);
}

TEST(args, dynamic_lists_and_tuples) {
  std::vector<arg> items;
  for (int i = 0; i < 3; ++i)
    items.push_back(i % 2 ? arg{std::to_string(i)} : arg{i});
  auto l = make_value(arg::list(items));
  EXPECT_STREQ(l.type_name(), "array");
  auto t = make_value(arg::tuple(items));
  EXPECT_STREQ(t.type_name(), "tuple");
  auto as = t.to<std::tuple<int, std::string, int>>();
  ASSERT_TRUE(as) << as.error().to_string();
  EXPECT_EQ(*as, std::make_tuple(0, std::string{"1"}, 2));
  // An arg inside a container packs as itself.
  auto nested = make_value(arg{std::vector<arg>{arg::tuple({}), arg{"x"}}});
  EXPECT_STREQ(nested.type_name(), "array");
}

TEST(args, copies_of_a_large_arg_share_its_encoding) {
  std::vector<char> payload(1 << 20, 'x');
  vars v{{"b", payload}};  // the braced list is copied into the vector
  arg direct{payload};
  arg copy = direct;
  EXPECT_EQ(copy.bytes().data(), direct.bytes().data());
  EXPECT_EQ(copy.bytes(), direct.bytes());
  EXPECT_EQ(v[0].value.bytes(), direct.bytes());
  auto from = arg::from_msgpack(direct.bytes());
  ASSERT_TRUE(from);
  arg from_copy = *from;
  EXPECT_EQ(from_copy.bytes().data(), from->bytes().data());
  auto t = arg::tuple({direct});
  arg t_copy = t;
  EXPECT_EQ(t_copy.bytes().data(), t.bytes().data());
  // Small ones are plain copies; either way the value is the same.
  arg small{std::string{"abc"}};
  arg small_copy = small;
  EXPECT_EQ(small_copy.bytes(), small.bytes());
  EXPECT_EQ(make_value(small_copy).as<std::string>(), "abc");
  EXPECT_EQ(make_value(copy).object().via.bin.size, payload.size());
}

TEST(args, a_moved_in_vector_or_a_borrowed_buffer_is_held_not_copied) {
  auto make = [] {
    std::vector<char> b(1 << 20);
    for (std::size_t i = 0; i < b.size(); ++i)
      b[i] = static_cast<char>(i * 13);
    return b;
  };
  const auto same = make();
  auto payload = make();
  const char* where = payload.data();
  arg a{std::move(payload)};
  ASSERT_TRUE(a.external());
  EXPECT_EQ(a.external()->data, where);  // the caller's memory, not a copy
  EXPECT_EQ(a.encoded_size(), same.size() + 5);
  // The frame is the one of the copied argument, inline and with a slot.
  protocol::request_extras x;
  vars moved{{"b", a}};
  vars copied{{"b", same}};
  EXPECT_EQ(protocol::encode_code_request(1, "eval", "return b", moved, "<f>", 1, x),
            protocol::encode_code_request(1, "eval", "return b", copied, "<f>", 1, x));
  x.slots_from = 4096;
  auto out = protocol::encode_code_request_out(1, "eval", "return b", moved, "<f>", 1, x);
  ASSERT_EQ(out.slots.size(), 1u);
  EXPECT_EQ(out.slots[0].data, where);
  EXPECT_FALSE(out.slots[0].ndarray);
  x.slots_from = 0;
  EXPECT_EQ(std::move(out).inline_frame(),
            protocol::encode_code_request(1, "eval", "return b", copied, "<f>", 1, x));
  // bytes() makes the encoding once, shared by the copies.
  arg c = a;
  EXPECT_EQ(a.bytes(), arg{same}.bytes());
  EXPECT_EQ(&c.bytes(), &a.bytes());
  EXPECT_EQ(make_value(c).object().via.bin.size, same.size());
  // Small ones are encoded as before; uint8_t vectors too.
  arg small{std::vector<std::uint8_t>{1, 2, 3}};
  EXPECT_FALSE(small.external());
  EXPECT_EQ(make_value(small).as<std::vector<std::uint8_t>>(), (std::vector<std::uint8_t>{1, 2, 3}));
  std::vector<std::uint8_t> big(10000, 7);
  const auto* big_at = big.data();
  arg u{std::move(big)};
  ASSERT_TRUE(u.external());
  EXPECT_EQ(reinterpret_cast<const std::uint8_t*>(u.external()->data), big_at);
  // Borrowed with an owner: kept alive by the argument and its copies only.
  auto owner = std::make_shared<std::string>(10000, 'z');
  std::weak_ptr<std::string> watch = owner;
  {
    auto r = arg::bytes_ref(owner, owner->data(), owner->size());
    owner.reset();
    EXPECT_FALSE(watch.expired());
    EXPECT_EQ(make_value(r).as<std::string>(), std::string(10000, 'z'));  // a bin reads as a string too
  }
  EXPECT_TRUE(watch.expired());
}
