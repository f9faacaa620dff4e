// Large bytes through shared memory (interpreter_options::shared_memory_threshold): the same
// values and limits as the pipe, the area reused as values die, values that outlive their
// process, forged references, and fork-server workers.
#include <cstring>

#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

std::vector<std::uint8_t> pattern(std::size_t n, unsigned seed) {
  std::vector<std::uint8_t> b(n);
  for (std::size_t i = 0; i < n; ++i)
    b[i] = static_cast<std::uint8_t>((i * 7 + seed) & 0xFF);
  return b;
}

std::string_view bin_of(const value& v) {
  EXPECT_EQ(v.object().type, msgpack::type::BIN);
  return {v.object().via.bin.ptr, v.object().via.bin.size};
}

std::string_view view_of(const std::vector<std::uint8_t>& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

// The runner's expression for pattern(n, seed).
std::string python_pattern(std::size_t n, unsigned seed) {
  return "bytes((i * 7 + " + std::to_string(seed) + ") & 0xFF for i in range(" + std::to_string(n) + "))";
}

class shared_memory_test : public runtime_test {};

} // namespace

TEST_F(shared_memory_test, large_bytes_go_both_ways_with_the_pipes_values) {
  for (std::size_t threshold : {mib, std::size_t{0}}) {  // shared memory, then the pipe alone
    auto o = options();
    o.shared_memory_threshold = threshold;
    o.init_script = {"def both(a, b):\n    return len(a) + len(b) if type(a) is type(b) is bytes else -1"};
    auto py = must_spawn(o);
    auto in = pattern(8 * mib + 3, 1);
    auto r = py.eval("assert type(b) is bytes\nreturn b[::-1]", {{"b", in}}, {.timeout = scaled(30s)});
    ASSERT_TRUE(r) << r.error();
    std::vector<std::uint8_t> reversed(in.rbegin(), in.rend());
    EXPECT_EQ(bin_of(*r), view_of(reversed));
    // As a call's argument and keyword, and as bytearray when asked for.
    auto c = py.call("both", {arg{in}}, {{"b", in}}, {.timeout = scaled(30s)});
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(c->as<std::int64_t>(), static_cast<std::int64_t>(2 * in.size()));
    auto n = py.eval("return [type(b).__name__, len(b), b[:3] == bytes([1, 8, 15])]", {{"b", in}},
                     {.timeout = scaled(30s), .bytes_as_bytearray = true});
    ASSERT_TRUE(n) << n.error();
    auto expected = std::make_tuple(std::string{"bytearray"}, in.size(), true);
    EXPECT_EQ((n->as<std::tuple<std::string, std::size_t, bool>>()), expected);
    // Small values are untouched by it.
    EXPECT_EQ(py.eval("return b", {{"b", pattern(10, 2)}})->as<std::vector<std::uint8_t>>(), pattern(10, 2));
    auto s = py.stats();
    if (threshold == 0) {
      EXPECT_EQ(s.shared_memory_out, 0u);
      EXPECT_EQ(s.shared_memory_in, 0u);
    } else {
      EXPECT_EQ(s.shared_memory_out, 3u);
      EXPECT_EQ(s.shared_memory_in, 1u);
    }
  }
}

TEST_F(shared_memory_test, the_area_is_reused_as_values_die_and_the_pipe_takes_the_overflow) {
  auto o = options();
  o.shared_memory_bytes = 8 * mib;
  o.init_script = {"blob = " + python_pattern(3 * mib, 4)};
  auto py = must_spawn(o);
  auto expected = pattern(3 * mib, 4);
  // One value at a time: each reply's range is free again before the next one.
  for (int i = 0; i < 12; ++i) {
    auto r = py.eval("return blob", {}, {.timeout = scaled(30s)});
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(bin_of(*r), view_of(expected));
  }
  EXPECT_EQ(py.stats().shared_memory_in, 12u);
  // Held values: two fit in 8 MiB, the third comes by the pipe, with the same bytes.
  std::vector<value> held;
  for (int i = 0; i < 3; ++i) {
    auto r = py.eval("return blob", {}, {.timeout = scaled(30s)});
    ASSERT_TRUE(r) << r.error();
    held.push_back(*r);
  }
  EXPECT_EQ(py.stats().shared_memory_in, 14u);
  for (auto& v : held)
    EXPECT_EQ(bin_of(v), view_of(expected));
  held.clear();
  auto again = py.eval("return blob", {}, {.timeout = scaled(30s)});
  ASSERT_TRUE(again) << again.error();
  EXPECT_EQ(py.stats().shared_memory_in, 15u);
  // Arguments: a request holds its range until the runner answered it.
  auto arg_bytes = pattern(5 * mib, 5);
  for (int i = 0; i < 4; ++i) {
    auto r = py.eval("return len(b)", {{"b", arg_bytes}}, {.timeout = scaled(30s)});
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(r->as<std::size_t>(), arg_bytes.size());
  }
  EXPECT_EQ(py.stats().shared_memory_out, 4u);
}

TEST_F(shared_memory_test, a_value_keeps_its_bytes_after_its_process_is_gone) {
  std::optional<value> kept;
  auto expected = pattern(4 * mib, 6);
  {
    auto py = must_spawn(options());
    auto r = py.eval("return " + python_pattern(4 * mib, 6), {}, {.timeout = scaled(30s)});
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(py.stats().shared_memory_in, 1u);
    kept = *r;
    ASSERT_TRUE(py.stop());
  }
  EXPECT_EQ(bin_of(*kept), view_of(expected));
}

TEST_F(shared_memory_test, limits_mean_what_they_mean_on_the_pipe) {
  for (std::size_t threshold : {mib, std::size_t{0}}) {
    auto o = options();
    o.max_frame_bytes = 4 * mib;
    o.shared_memory_threshold = threshold;
    o.shared_memory_bytes = 16 * mib;
    auto py = must_spawn(o);
    auto too_big = py.eval("return len(b)", {{"b", pattern(4 * mib, 7)}});
    ASSERT_FALSE(too_big);
    EXPECT_EQ(too_big.error().code, errc::frame_too_large) << too_big.error();
    auto fits = py.eval("return len(b)", {{"b", pattern(4 * mib - 100, 7)}});
    ASSERT_TRUE(fits) << fits.error();
    auto big_reply = py.eval("return bytes(4 * 1024 * 1024)");
    ASSERT_FALSE(big_reply);
    EXPECT_EQ(big_reply.error().code, errc::unserializable) << big_reply.error();
    auto reply = py.eval("return bytes(4 * 1024 * 1024 - 100)");
    ASSERT_TRUE(reply) << reply.error();
    EXPECT_EQ(reply->object().via.bin.size, 4 * mib - 100);
  }
}

TEST_F(shared_memory_test, a_forged_reference_kills_only_that_interpreter) {
  auto py = must_spawn(options());
  auto other = must_spawn(options());
  // A response whose ok is an ext 6 far outside the runner's area.
  auto r = py.eval(
    "import os, time\n"
    "body = b'\\x94\\x01\\xcd\\x03\\xe7\\xa4eval\\x81\\xa2ok\\xd8\\x06' + (1 << 62).to_bytes(8, 'big') + (16).to_bytes(8, 'big')\n"
    "os.write(4, len(body).to_bytes(4, 'big') + body)\n"
    "time.sleep(30)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::protocol_error) << r.error();
  EXPECT_TRUE(eventually([&] { return py.state() == interpreter_state::stopped; }));
  auto fine = other.eval("return b", {{"b", pattern(2 * mib, 8)}});
  ASSERT_TRUE(fine) << fine.error();
  EXPECT_EQ(bin_of(*fine), view_of(pattern(2 * mib, 8)));
}

TEST_F(shared_memory_test, fork_server_workers_get_their_own_area) {
  auto o = options();
  o.spawn = spawn_mode::fork_server;
  auto a = must_spawn(o);
  auto b = must_spawn(o);
  auto in = pattern(3 * mib, 9);
  for (auto* py : {&a, &b}) {
    auto r = py->eval("return b[1:]", {{"b", in}}, {.timeout = scaled(30s)});
    ASSERT_TRUE(r) << r.error();
    EXPECT_EQ(bin_of(*r), view_of(in).substr(1));
    EXPECT_EQ(py->stats().shared_memory_out, 1u);
    EXPECT_EQ(py->stats().shared_memory_in, 1u);
  }
}

TEST_F(shared_memory_test, memoryviews_on_request_are_views_of_the_shared_memory_for_that_request) {
  auto py = must_spawn(options());
  auto in = pattern(4 * mib, 10);
  eval_options view;
  view.bytes_as_memoryview = true;
  view.timeout = scaled(30s);
  auto kinds = py.eval("return [type(b).__name__, b.readonly, type(s).__name__]",
                       {{"b", in}, {"s", pattern(10, 1)}}, view);
  ASSERT_TRUE(kinds) << kinds.error();
  auto expected = std::make_tuple(std::string{"memoryview"}, true, std::string{"memoryview"});
  EXPECT_EQ((kinds->as<std::tuple<std::string, bool, std::string>>()), expected);
  // The view itself as the result: it leaves by shared memory before it is released.
  auto same = py.eval("return b", {{"b", in}}, view);
  ASSERT_TRUE(same) << same.error();
  EXPECT_EQ(bin_of(*same), view_of(in));
  EXPECT_EQ(py.stats().shared_memory_out, 2u);
  EXPECT_EQ(py.stats().shared_memory_in, 1u);
  // Released at the end of its request: a view kept somewhere (here in a module) raises
  // ValueError when touched later.
  auto keep = py.eval("import sys\nsys.modules['__main__'].held = b\nreturn 1", {{"b", in}}, view);
  ASSERT_TRUE(keep) << keep.error();
  auto later = py.eval("import sys\ntry:\n    sys.modules['__main__'].held[0]\nexcept ValueError:\n    return 'released'\nreturn 'alive'");
  ASSERT_TRUE(later) << later.error();
  EXPECT_EQ(later->as<std::string>(), "released");
  // Both ways at once is not a thing.
  view.bytes_as_bytearray = true;
  auto both = py.eval("return 1", {}, view);
  ASSERT_FALSE(both);
  EXPECT_EQ(both.error().code, errc::invalid_argument);
}

TEST_F(shared_memory_test, moved_in_buffers_give_the_same_values_both_ways) {
  for (std::size_t threshold : {mib, std::size_t{0}}) {
    SCOPED_TRACE(threshold);
    auto o = options();
    o.shared_memory_threshold = threshold;
    auto py = must_spawn(o);
    auto expected = pattern(3 * mib + 5, 9);
    auto moved = expected;
    auto r = py.eval("return [len(b), b[::-1][:4]]", {{"b", std::move(moved)}}, {.timeout = scaled(30s)});
    ASSERT_TRUE(r) << r.error();
    auto tail = std::vector<std::uint8_t>(expected.rbegin(), expected.rbegin() + 4);
    EXPECT_EQ((r->as<std::tuple<std::size_t, std::vector<std::uint8_t>>>()),
              std::make_tuple(expected.size(), tail));
    // Borrowed with an owner, as a call's argument.
    auto owner = std::make_shared<const std::vector<std::uint8_t>>(expected);
    auto c = py.call("bytes", {arg::bytes_ref(owner, owner->data(), owner->size())}, {},
                     {.timeout = scaled(30s)});
    ASSERT_TRUE(c) << c.error();
    EXPECT_EQ(bin_of(*c), view_of(expected));
    auto s = py.stats();
    EXPECT_EQ(s.shared_memory_out, threshold == 0 ? 0u : 2u);  // both arguments
    EXPECT_EQ(s.shared_memory_in, threshold == 0 ? 0u : 1u);   // the call's result
  }
}

TEST_F(shared_memory_test, python_cannot_resize_the_shared_memory) {
  // The runner's mmap may keep a dup of the memfd (Python < 3.13): truncating it used to make
  // the host's next access a SIGBUS (a review). The memfd is sealed at its size.
  auto py = must_spawn(options());
  auto tried = py.eval(
    "import os\n"
    "out = []\n"
    "for name in os.listdir('/proc/self/fd'):\n"
    "    try:\n"
    "        if not os.readlink('/proc/self/fd/' + name).startswith('/memfd:pyvisor-shm'):\n"
    "            continue\n"
    "        os.ftruncate(int(name), 0)\n"
    "        out.append('truncated')\n"
    "    except OSError as e:\n"
    "        out.append(e.errno)\n"
    "return out");
  ASSERT_TRUE(tried) << tried.error();
  for (auto r : tried->as<std::vector<msgpack::object>>())
    EXPECT_EQ(r.type, msgpack::type::POSITIVE_INTEGER) << "the memfd was truncated";
  auto in = pattern(3 * mib, 5);
  auto r = py.eval("return b", {{"b", in}}, {.timeout = scaled(30s)});
  ASSERT_TRUE(r) << r.error();
  EXPECT_EQ(bin_of(*r), view_of(in));
}
