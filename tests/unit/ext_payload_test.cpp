// Regression tests of the ext payload decoder (issue 7, defects 1 and 2): tuples, sets and
// frozensets (ext 1-3, whose payload is itself a msgpack array) are decoded once, by reference,
// under the frame limits, on every path: pyvisor::value's expansion and the msgpack adaptors of
// pyvisor::tuple/set/frozenset.
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "core/ext_payload.hpp"
#include "protocol/message.hpp"
#include "pyvisor/types.hpp"
#include "pyvisor/value.hpp"

using namespace pyvisor;

namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool asan = true;
#else
constexpr bool asan = false;
#endif
#else
constexpr bool asan = false;
#endif

std::string be32(std::uint32_t n) {
  return {static_cast<char>(n >> 24), static_cast<char>(n >> 16), static_cast<char>(n >> 8),
          static_cast<char>(n)};
}

/// An ext 8 object of type `type` around `payload`, as on the wire.
std::string ext8(std::int8_t type, const std::string& payload) {
  return std::string{"\xc7"} + static_cast<char>(payload.size()) + static_cast<char>(type) + payload;
}

/// The forged payload of defect 2: an array32 header declaring 2^28 elements, then a few nils.
/// 26 bytes on the wire; msgpack-cxx alone allocates 2^28 * 16 bytes = 4 GiB for it.
std::string forged(std::int8_t type, char header = '\xdd') {
  return ext8(type, std::string{header} + be32(std::uint32_t{1} << 28) + std::string(18, '\xc0'));
}

/// A value over bytes that it keeps alive itself.
value value_of(std::string bytes) {
  auto keep = std::make_shared<std::pair<std::string, msgpack::object_handle>>();
  keep->first = std::move(bytes);
  keep->second = msgpack::unpack(keep->first.data(), keep->first.size());
  const msgpack::object& o = keep->second.get();
  return value{keep, o};
}

template <class T>
std::string pack(const T& x) {
  return detail::pack_to_string(x);
}

/// Runs `f` (which returns a message) in a forked child whose address space is capped at
/// about 1 GiB, so an allocation of gigabytes fails there even where overcommit would let a
/// lazy malloc succeed. Without the cap under ASan (its shadow memory needs terabytes).
template <class F>
std::string in_capped_child(F f) {
  int fds[2];
  if (::pipe(fds) != 0)
    return "pipe failed";
  pid_t pid = ::fork();
  if (pid == 0) {
    ::close(fds[0]);
    if (!asan) {
      rlimit rl{std::size_t{1} << 30, std::size_t{1} << 30};
      ::setrlimit(RLIMIT_AS, &rl);
    }
    std::string msg;
    try {
      msg = f();
    } catch (const std::exception& e) {
      msg = std::string("escaped exception: ") + e.what();
    }
    auto n = ::write(fds[1], msg.data(), msg.size());
    (void) n;
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  char buf[4096];
  for (ssize_t n; (n = ::read(fds[0], buf, sizeof buf)) > 0;)
    out.append(buf, static_cast<std::size_t>(n));
  ::close(fds[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    out += " [child died: status " + std::to_string(status) + "]";
  return out;
}

/// VmRSS or VmHWM of this process in bytes.
std::size_t status_kib(const char* key) {
  std::ifstream in("/proc/self/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0)
      return std::stoul(line.substr(std::strlen(key) + 1)) * 1024;
  return 0;
}

/// Resets VmHWM to the current RSS (Linux >= 4.0); false when not permitted.
bool reset_peak_rss() {
  std::ofstream out("/proc/self/clear_refs");
  out << "5";
  out.flush();
  return static_cast<bool>(out);
}

/// A frame body `[1, 1, "eval", {"ok": V}]` where V is `levels` nested 1-tuples around a bin
/// of `size` bytes, built directly (each ext header is computed from the inside out, so the
/// payload is written once).
std::string nested_tuples_body(std::size_t levels, std::size_t size) {
  std::string bin_header = std::string{"\xc6"} + be32(static_cast<std::uint32_t>(size));
  std::vector<std::string> headers;  // innermost first
  std::size_t inner = bin_header.size() + size;
  for (std::size_t i = 0; i < levels; ++i) {
    std::size_t payload = 1 + inner;  // fixarray 1 + the inner value
    headers.push_back(std::string{"\xc9"} + be32(static_cast<std::uint32_t>(payload)) + "\x01" + "\x91");
    inner = 6 + payload;
  }
  std::string body = "\x94\x01\x01\xa4" "eval" "\x81\xa2" "ok";
  for (auto it = headers.rbegin(); it != headers.rend(); ++it)
    body += *it;
  body += bin_header;
  body.append(size, 'x');
  return body;
}

} // namespace

// ---- defect 2: every decode path goes through the limits --------------------------------------

TEST(ext_payload, forged_element_count_is_refused_by_every_conversion_naming_the_limit) {
  // Each conversion runs in a capped child: before the fix msgpack-cxx tried to allocate 4 GiB
  // there ("std::bad_alloc"), or, with overcommit, got it lazily and failed with "insufficient
  // bytes"; neither names the limit.
  struct conversion {
    const char* what;
    std::int8_t type;
    char header;
    std::string (*run)(const value&);
  };
  const std::vector<conversion> conversions{
    {"tuple<int>", 1, '\xdd',
     [](const value& v) { auto r = v.to<pyvisor::tuple<int>>(); return r ? std::string("converted") : r.error().message; }},
    {"tuple<vector<int>>", 1, '\xdd',
     [](const value& v) { auto r = v.to<pyvisor::tuple<std::vector<int>>>(); return r ? std::string("converted") : r.error().message; }},
    {"set<int>", 2, '\xdd',
     [](const value& v) { auto r = v.to<pyvisor::set<int>>(); return r ? std::string("converted") : r.error().message; }},
    {"frozenset<std::string>", 3, '\xdd',
     [](const value& v) { auto r = v.to<pyvisor::frozenset<std::string>>(); return r ? std::string("converted") : r.error().message; }},
  };
  for (const auto& c : conversions) {
    auto bytes = forged(c.type, c.header);
    EXPECT_LT(bytes.size(), 30u);
    auto out = in_capped_child([&] { return c.run(value_of(bytes)); });
    EXPECT_NE(out.find("exceeds the limit of 4194304"), std::string::npos) << c.what << ": " << out;
  }
  // A map32 header declaring 2^28 pairs is not even an array: refused before any decoding
  // (msgpack-cxx alone allocated 2^28 * 32 bytes = 8 GiB for it).
  auto out = in_capped_child([] {
    auto r = value_of(forged(2, '\xdf')).to<pyvisor::set<int>>();
    return r ? std::string("converted") : r.error().message;
  });
  EXPECT_EQ(out, "cannot convert set value: set payload: not a msgpack array");
}

TEST(ext_payload, forged_payload_through_a_raw_msgpack_object) {
  // The adaptors on their own (no pyvisor::value in between) throw a msgpack exception.
  auto out = in_capped_child([] {
    auto bytes = forged(1);
    auto oh = msgpack::unpack(bytes.data(), bytes.size());
    try {
      oh.get().as<pyvisor::tuple<int, int>>();
      return std::string("converted");
    } catch (const msgpack::unpack_error& e) {
      return std::string("unpack_error: ") + e.what();
    } catch (const std::exception& e) {
      return std::string("other: ") + e.what();
    }
  });
  EXPECT_EQ(out.rfind("unpack_error: ", 0), 0u) << out;
  EXPECT_NE(out.find("exceeds the limit of 4194304"), std::string::npos) << out;
}

TEST(ext_payload, counts_beyond_the_payload_and_malformed_payloads_are_clear_errors) {
  auto fails_with = [](const std::string& bytes, const std::string& text) {
    auto r = value_of(bytes).to<pyvisor::tuple<int>>();
    ASSERT_FALSE(r) << "converted";
    EXPECT_EQ(r.error().code, errc::type_mismatch);
    EXPECT_NE(r.error().message.find(text), std::string::npos) << r.error().message;
  };
  // 4194303 elements (under the element limit) declared in 24 bytes.
  fails_with(ext8(1, "\xdd" + be32(4194303) + std::string(18, '\xc0')), "bytes left");
  fails_with(ext8(1, "\x92\x01"), "declared element count exceeds the 1 bytes left");
  fails_with(ext8(1, "\x91\xd9"), "truncated");
  fails_with(ext8(1, "\x91\x01\x02"), "trailing");
  fails_with(ext8(1, "\x05"), "not a msgpack array");
  fails_with(ext8(1, ""), "not a msgpack array");
  fails_with(ext8(1, "\x91\xc1"), "invalid msgpack type byte");
}

TEST(ext_payload, nesting_is_bounded_by_the_frame_depth) {
  auto nested = [](int levels) {
    std::string v = "\x01";
    for (int i = 0; i < levels; ++i)
      v = std::string{"\xc9"} + be32(static_cast<std::uint32_t>(v.size() + 1)) + "\x01\x91" + v;
    return v;
  };
  // 128 levels expand (the limit counts the payload arrays), 129 do not.
  auto ok = value_of(nested(128));
  const msgpack::object* o = &ok.plain();
  for (int i = 0; i < 128; ++i) {
    ASSERT_EQ(o->type, msgpack::type::ARRAY) << i;
    o = &o->via.array.ptr[0];
  }
  EXPECT_EQ(o->as<int>(), 1);
  auto deep = value_of(nested(129));
  EXPECT_EQ(deep.plain().type, msgpack::type::EXT);
  auto r = deep.to<std::vector<msgpack::object>>();
  EXPECT_FALSE(r);
  // A payload nested deeper than the limit inside one ext is refused by the structure check.
  std::string arrays(129, '\x91');
  auto r2 = value_of(ext8(1, arrays + "\x01")).to<pyvisor::tuple<msgpack::object>>();
  ASSERT_FALSE(r2);
  EXPECT_NE(r2.error().message.find("nesting deeper than 128"), std::string::npos) << r2.error().message;
}

// ---- defect 1: O(payload) memory for nested tuples ------------------------------------------

TEST(ext_payload, nested_tuples_around_8_mib_cost_o_payload_memory) {
  constexpr std::size_t size = std::size_t{8} << 20;
  constexpr std::size_t levels = 100;
  auto body = nested_tuples_body(levels, size);
  // The large-frame path: the body lives in a buffer of its own that decode references.
  std::shared_ptr<char[]> buf(new char[body.size()]);
  std::memcpy(buf.get(), body.data(), body.size());
  std::string_view view{buf.get(), body.size()};
  std::string{}.swap(body);

  bool peak_ok = reset_peak_rss();
  auto rss0 = status_kib("VmRSS:");
  auto d = protocol::decode(view, core::limits{}, buf);
  ASSERT_TRUE(std::holds_alternative<protocol::message>(d)) << std::get<std::string>(d);
  auto reply = protocol::parse_response(std::get<protocol::message>(d));
  ASSERT_TRUE(reply.result) << reply.result.error().to_string();
  value v = *reply.result;
  auto rss1 = status_kib("VmRSS:");
  auto peak = peak_ok ? status_kib("VmHWM:") : rss1;
  auto growth = std::max(rss1, peak) - rss0;
  std::printf("nested tuples: RSS +%zu KiB (peak %s), payload %zu KiB\n", growth / 1024,
              peak_ok ? "measured" : "not resettable", size / 1024);
  EXPECT_LT(growth, 4 * size) << "RSS grew by " << growth / (1 << 20) << " MiB for an "
                              << size / (1 << 20) << " MiB payload";

  // And it is the right value: 100 arrays of one, then the 8 MiB binary.
  const msgpack::object* o = &v.plain();
  for (std::size_t i = 0; i < levels; ++i) {
    ASSERT_EQ(o->type, msgpack::type::ARRAY) << i;
    ASSERT_EQ(o->via.array.size, 1u) << i;
    o = &o->via.array.ptr[0];
  }
  ASSERT_EQ(o->type, msgpack::type::BIN);
  EXPECT_EQ(o->via.bin.size, size);
  EXPECT_EQ(o->via.bin.ptr[size - 1], 'x');
  EXPECT_EQ(v.type_name(), std::string("tuple"));
}

TEST(ext_payload, value_without_a_zone_references_the_payload_too) {
  constexpr std::size_t size = std::size_t{8} << 20;
  auto body = nested_tuples_body(100, size);
  auto ext = body.substr(12);  // skip the frame header `[1, 1, "eval", {"ok": `
  std::string{}.swap(body);
  auto rss0 = status_kib("VmRSS:");
  value v = value_of(std::move(ext));  // msgpack::unpack copies the outer ext once: 8 MiB
  auto growth = status_kib("VmRSS:") - rss0;
  EXPECT_LT(growth, 4 * size) << "RSS grew by " << growth / (1 << 20) << " MiB";
  auto r = v.to<pyvisor::tuple<msgpack::object>>();
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->get<0>().type, msgpack::type::ARRAY);
}

// ---- existing behaviour: nested tuples, sets and frozensets still convert ---------------------

TEST(ext_payload, nested_round_trip_values_still_convert) {
  using inner = pyvisor::tuple<std::string, pyvisor::set<int>>;
  using outer = pyvisor::tuple<int, inner, pyvisor::frozenset<std::string>, std::vector<pyvisor::tuple<int, int>>>;
  outer x{7, inner{"a", pyvisor::set<int>{{1, 2, 3}}}, pyvisor::frozenset<std::string>{{"p", "q"}},
          {pyvisor::tuple<int, int>{1, 2}, pyvisor::tuple<int, int>{3, 4}}};
  auto v = value_of(pack(x));
  EXPECT_EQ(v.type_name(), std::string("tuple"));
  auto back = v.to<outer>();
  ASSERT_TRUE(back) << back.error().to_string();
  EXPECT_EQ(*back, x);
  // std containers read the expanded form.
  auto std_form = v.to<std::tuple<int, std::tuple<std::string, std::vector<int>>, std::vector<std::string>,
                                  std::vector<std::vector<int>>>>();
  ASSERT_TRUE(std_form) << std_form.error().to_string();
  EXPECT_EQ(std::get<0>(*std_form), 7);
  EXPECT_EQ(std::get<1>(std::get<1>(*std_form)), (std::vector<int>{1, 2, 3}));
  EXPECT_EQ(std::get<3>(*std_form), (std::vector<std::vector<int>>{{1, 2}, {3, 4}}));
  // Tuples as map keys and inside maps.
  std::map<std::string, pyvisor::tuple<int, std::string>> m{{"k", {1, "one"}}};
  auto mv = value_of(pack(m));
  auto mb = mv.to<std::map<std::string, pyvisor::tuple<int, std::string>>>();
  ASSERT_TRUE(mb) << mb.error().to_string();
  EXPECT_EQ(*mb, m);
  auto ms = mv.to<std::map<std::string, std::tuple<int, std::string>>>();
  ASSERT_TRUE(ms) << ms.error().to_string();
  EXPECT_EQ(std::get<1>(ms->at("k")), "one");
  // The raw object (not expanded) converts through the adaptors as well.
  auto raw = pack(x);
  auto oh = msgpack::unpack(raw.data(), raw.size());
  EXPECT_EQ(oh.get().as<outer>(), x);
  // A value passed back keeps its tuples: object() is the wire form.
  EXPECT_EQ(v.object().type, msgpack::type::EXT);
  EXPECT_EQ(v.plain().type, msgpack::type::ARRAY);
}

// ---- defect 12 (part): misuse of expected is defined; as<T> throws, to<T> does not ----------

TEST(expected_access, value_of_an_error_throws_bad_expected_access_carrying_the_error) {
  expected<int> e = make_error(errc::timeout, "too slow");
  ASSERT_FALSE(e);
  try {
    (void) e.value();
    ADD_FAILURE() << "value() of an error did not throw";
  } catch (const bad_expected_access& x) {
    EXPECT_EQ(x.error().code, errc::timeout);
    EXPECT_EQ(x.error().message, "too slow");
    EXPECT_NE(std::string(x.what()).find("too slow"), std::string::npos) << x.what();
  }
  EXPECT_THROW((void) *e, bad_expected_access);
  EXPECT_THROW((void) std::move(e).value(), bad_expected_access);
  const expected<std::string> c = make_error(errc::cancelled, "gone");
  EXPECT_THROW((void) c->size(), bad_expected_access);
  // error() of a value is misuse too.
  expected<int> ok = 3;
  EXPECT_EQ(*ok, 3);
  try {
    (void) ok.error();
    ADD_FAILURE() << "error() of a value did not throw";
  } catch (const bad_expected_access& x) {
    EXPECT_EQ(x.error().code, errc::none);
  }
  expected<void> v = make_error(errc::overloaded, "busy");
  EXPECT_THROW(v.value(), bad_expected_access);
  EXPECT_EQ(v.error().code, errc::overloaded);
  expected<void> fine;
  EXPECT_NO_THROW(fine.value());
  EXPECT_THROW((void) fine.error(), bad_expected_access);
}

TEST(expected_access, value_as_throws_and_to_reports) {
  auto v = value_of(pack(std::string("text")));
  EXPECT_THROW((void) v.as<int>(), msgpack::type_error);
  auto r = v.to<int>();
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::type_mismatch);
  EXPECT_EQ(v.to<std::string>().value(), "text");
}
