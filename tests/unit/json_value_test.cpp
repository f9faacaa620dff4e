// Unit tests of the JSON <-> msgpack codec shared by the pyvisor program and the HTTP gateway
// (actors/gateway/json_value.cpp, json_render.cpp, on nlohmann/json): strict parsing, the
// lossless rendering of docs/json.md in both directions, every malformed tag.

#include "gateway/json_value.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>
#include <msgpack.hpp>

#include "core/ext_payload.hpp"
#include "pyvisor/value.hpp"

namespace {

using pyvisor::gateway::dump_json;
using pyvisor::gateway::base64_encode;
using pyvisor::gateway::is_valid_utf8;
using pyvisor::gateway::json_error;
using pyvisor::gateway::json_to_msgpack;
using pyvisor::gateway::to_json;
using pyvisor::gateway::twos_complement_to_decimal;

struct buffer {
  std::string s;
  void write(const char* p, std::size_t n) { s.append(p, n); }
};
using packer = msgpack::packer<buffer>;

template <class F>
std::string build(F f) {
  buffer b;
  packer pk(b);
  f(pk);
  return b.s;
}

std::string hex(std::string_view bytes) {
  static constexpr char digits[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    const auto u = static_cast<unsigned char>(c);
    out += digits[u >> 4];
    out += digits[u & 0xF];
  }
  return out;
}

std::string unhex(std::string_view h) {
  std::string out;
  for (std::size_t i = 0; i + 1 < h.size(); i += 2) {
    out += static_cast<char>(std::stoi(std::string(h.substr(i, 2)), nullptr, 16));
  }
  return out;
}

/// Renders msgpack bytes (exactly one object) as JSON.
std::string render(const std::string& bytes) {
  std::size_t off = 0;
  msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size(), off);
  EXPECT_EQ(off, bytes.size());
  return to_json(oh.get());
}

/// JSON -> msgpack -> JSON.
std::string round_trip(std::string_view json) { return render(json_to_msgpack(json)); }

/// Packs `payload` (msgpack bytes or raw bytes) as ext `type`.
std::string ext(std::int8_t type, const std::string& payload) {
  return build([&](packer& pk) {
    pk.pack_ext(payload.size(), type);
    pk.pack_ext_body(payload.data(), static_cast<std::uint32_t>(payload.size()));
  });
}

std::string str(std::string_view s) {
  return build([&](packer& pk) {
    pk.pack_str(static_cast<std::uint32_t>(s.size()));
    pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
  });
}

std::string bin(std::string_view s) {
  return build([&](packer& pk) {
    pk.pack_bin(static_cast<std::uint32_t>(s.size()));
    pk.pack_bin_body(s.data(), static_cast<std::uint32_t>(s.size()));
  });
}

std::string array_header(std::uint32_t n) {
  return build([&](packer& pk) { pk.pack_array(n); });
}

std::string map_header(std::uint32_t n) {
  return build([&](packer& pk) { pk.pack_map(n); });
}

template <class T>
std::string packed(const T& v) {
  return build([&](packer& pk) { pk.pack(v); });
}

/// msgpack float 64 (packer::pack_double would pack integral values as ints).
std::string packed_double(double d) {
  std::uint64_t bits = 0;
  std::memcpy(&bits, &d, sizeof d);
  std::string out(1, '\xCB');
  for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((bits >> shift) & 0xFF);
  return out;
}

/// Expects json_to_msgpack(text) to fail at `offset` with a reason containing `part`.
void expect_error(std::string_view text, std::size_t offset, std::string_view part,
                  std::size_t max_depth = pyvisor::gateway::default_max_json_depth) {
  try {
    const std::string out = json_to_msgpack(text, max_depth);
    ADD_FAILURE() << "no error for <" << text << ">, got " << hex(out);
  } catch (const json_error& e) {
    EXPECT_EQ(e.offset(), offset) << "<" << text << ">: " << e.what();
    EXPECT_NE(e.reason().find(part), std::string::npos)
        << "<" << text << ">: reason '" << e.reason() << "' lacks '" << part << "'";
    EXPECT_EQ(std::string(e.what()), e.reason() + " at byte " + std::to_string(offset));
  }
}

// ---------------------------------------------------------------------------------------------
// JSON -> msgpack
// ---------------------------------------------------------------------------------------------

TEST(CliJsonParse, Literals) {
  EXPECT_EQ(hex(json_to_msgpack("null")), "c0");
  EXPECT_EQ(hex(json_to_msgpack("true")), "c3");
  EXPECT_EQ(hex(json_to_msgpack("false")), "c2");
  EXPECT_EQ(hex(json_to_msgpack(" \t\r\n null \n")), "c0");
}

TEST(CliJsonParse, IntegersUseMinimalWidth) {
  EXPECT_EQ(hex(json_to_msgpack("0")), "00");
  EXPECT_EQ(hex(json_to_msgpack("-0")), "00");
  EXPECT_EQ(hex(json_to_msgpack("127")), "7f");
  EXPECT_EQ(hex(json_to_msgpack("128")), "cc80");
  EXPECT_EQ(hex(json_to_msgpack("256")), "cd0100");
  EXPECT_EQ(hex(json_to_msgpack("65536")), "ce00010000");
  EXPECT_EQ(hex(json_to_msgpack("4294967296")), "cf0000000100000000");
  EXPECT_EQ(hex(json_to_msgpack("-1")), "ff");
  EXPECT_EQ(hex(json_to_msgpack("-32")), "e0");
  EXPECT_EQ(hex(json_to_msgpack("-33")), "d0df");
  EXPECT_EQ(hex(json_to_msgpack("-129")), "d1ff7f");
  EXPECT_EQ(hex(json_to_msgpack("-2147483649")), "d3ffffffff7fffffff");
}

TEST(CliJsonParse, Int64AndUint64Edges) {
  // int64 max is non-negative: unsigned format.
  EXPECT_EQ(hex(json_to_msgpack("9223372036854775807")), "cf7fffffffffffffff");
  EXPECT_EQ(hex(json_to_msgpack("9223372036854775808")), "cf8000000000000000");
  EXPECT_EQ(hex(json_to_msgpack("18446744073709551615")), "cfffffffffffffffff");
  EXPECT_EQ(hex(json_to_msgpack("-9223372036854775808")), "d38000000000000000");
  // One past either end: float 64.
  EXPECT_EQ(json_to_msgpack("18446744073709551616"), packed_double(18446744073709551616.0));
  EXPECT_EQ(json_to_msgpack("-9223372036854775809"), packed_double(-9223372036854775808.0));
  EXPECT_EQ(json_to_msgpack("100000000000000000000000"), packed_double(1e23));
}

TEST(CliJsonParse, NonIntegersAreFloat64) {
  EXPECT_EQ(json_to_msgpack("1.5"), packed_double(1.5));
  EXPECT_EQ(json_to_msgpack("1.0"), packed_double(1.0));
  EXPECT_EQ(json_to_msgpack("-2.25"), packed_double(-2.25));
  EXPECT_EQ(json_to_msgpack("1e2"), packed_double(100.0));
  EXPECT_EQ(json_to_msgpack("1E+2"), packed_double(100.0));
  EXPECT_EQ(json_to_msgpack("25e-2"), packed_double(0.25));
  EXPECT_EQ(json_to_msgpack("0.1"), packed_double(0.1));
  EXPECT_EQ(json_to_msgpack("0e0"), packed_double(0.0));
  EXPECT_EQ(hex(json_to_msgpack("1.0")), "cb3ff0000000000000");  // a float, not int 1
  EXPECT_EQ(hex(json_to_msgpack("2e0")), "cb4000000000000000");
  EXPECT_EQ(json_to_msgpack("1.7976931348623157e308"),
            packed_double(std::numeric_limits<double>::max()));
  EXPECT_EQ(json_to_msgpack("5e-324"), packed_double(std::numeric_limits<double>::denorm_min()));
  EXPECT_EQ(hex(json_to_msgpack("-0.0")), "cb8000000000000000");  // the sign survives
  // Underflow rounds to zero; overflow is an error (below).
  EXPECT_EQ(json_to_msgpack("1e-400"), packed_double(0.0));
  EXPECT_EQ(hex(json_to_msgpack("-1e-400")), "cb8000000000000000");
}

TEST(CliJsonParse, StringsAndEscapes) {
  EXPECT_EQ(json_to_msgpack(R"("")"), str(""));
  EXPECT_EQ(json_to_msgpack(R"("abc")"), str("abc"));
  EXPECT_EQ(json_to_msgpack(R"("\"\\\/\b\f\n\r\t")"), str("\"\\/\b\f\n\r\t"));
  EXPECT_EQ(json_to_msgpack(R"("a\u0041\u00e9\u00E9\u20ac")"), str("aA\xC3\xA9\xC3\xA9\xE2\x82\xAC"));
  EXPECT_EQ(json_to_msgpack(R"("\u0000")"), str(std::string_view("\0", 1)));
  EXPECT_EQ(json_to_msgpack(R"("\u007f\u0080\u07ff\u0800\uffff")"),
            str("\x7F\xC2\x80\xDF\xBF\xE0\xA0\x80\xEF\xBF\xBF"));
  // Raw UTF-8 passes through.
  EXPECT_EQ(json_to_msgpack("\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\""),
            str("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80"));
  // Long strings use str8/str16.
  const std::string long_text(300, 'x');
  EXPECT_EQ(json_to_msgpack("\"" + long_text + "\""), str(long_text));
}

TEST(CliJsonParse, SurrogatePairs) {
  EXPECT_EQ(json_to_msgpack(R"("\ud83d\ude00")"), str("\xF0\x9F\x98\x80"));  // U+1F600
  EXPECT_EQ(json_to_msgpack(R"("\uD800\uDC00")"), str("\xF0\x90\x80\x80"));  // U+10000
  EXPECT_EQ(json_to_msgpack(R"("\uDBFF\uDFFF")"), str("\xF4\x8F\xBF\xBF"));  // U+10FFFF
  EXPECT_EQ(json_to_msgpack(R"("x\uD83D\uDE00y")"), str("x\xF0\x9F\x98\x80y"));
}

TEST(CliJsonParse, Containers) {
  EXPECT_EQ(hex(json_to_msgpack("[]")), "90");
  EXPECT_EQ(hex(json_to_msgpack("{}")), "80");
  EXPECT_EQ(hex(json_to_msgpack("[1,2,3]")), "93010203");
  EXPECT_EQ(hex(json_to_msgpack(" [ 1 , [ ] , { } ] ")), "93019080");
  EXPECT_EQ(hex(json_to_msgpack("[[[]]]")), "919190");
  EXPECT_EQ(hex(json_to_msgpack(R"({"a":1,"b":[true,null]})")), "82a16101a16292c3c0");
  // Keys keep their order; a duplicate key keeps its first position and its last value (what
  // Python's dict makes of the same JSON).
  EXPECT_EQ(hex(json_to_msgpack(R"({"b":1,"a":2,"b":3})")), "82a16203a16102");
  // Header sizes: fixarray up to 15, array16 up to 65535, array32 above.
  std::string a15 = "[0", a16 = "[0", a70k = "[0";
  for (int i = 1; i < 15; ++i) a15 += ",0";
  for (int i = 1; i < 16; ++i) a16 += ",0";
  for (int i = 1; i < 70000; ++i) a70k += ",0";
  a15 += "]";
  a16 += "]";
  a70k += "]";
  EXPECT_EQ(hex(json_to_msgpack(a15)), "9f" + std::string(30, '0'));
  EXPECT_EQ(hex(json_to_msgpack(a16)), "dc0010" + std::string(32, '0'));
  const std::string big = json_to_msgpack(a70k);
  EXPECT_EQ(hex(big.substr(0, 5)), "dd00011170");
  EXPECT_EQ(big.size(), 5u + 70000u);
  std::string m16 = "{";
  for (int i = 0; i < 16; ++i) m16 += (i ? ",\"" : "\"") + std::string(1, char('a' + i)) + "\":0";
  m16 += "}";
  EXPECT_EQ(hex(json_to_msgpack(m16).substr(0, 3)), "de0010");
  // Headers of nested containers land in the right places.
  const std::string nested = json_to_msgpack(R"([{"k":[1,{}]},[],"s",{"x":{"y":[[2]]}}])");
  EXPECT_EQ(render(nested), R"([{"k":[1,{}]},[],"s",{"x":{"y":[[2]]}}])");
}

TEST(CliJsonParse, RoundTripIsCanonical) {
  EXPECT_EQ(round_trip(R"( { "a" : [ 1 , -2 , 3.5 , "x\n" , true , null , { } ] , "b" : 1e3 } )"),
            R"({"a":[1,-2,3.5,"x\n",true,null,{}],"b":1000.0})");
  EXPECT_EQ(round_trip(R"("\u00e9\/")"), "\"\xC3\xA9/\"");
}

TEST(CliJsonParse, NestingLimit) {
  const auto nest = [](std::size_t n) { return std::string(n, '[') + std::string(n, ']'); };
  EXPECT_NO_THROW(json_to_msgpack(nest(128)));
  EXPECT_EQ(json_to_msgpack(nest(128)), std::string(127, '\x91') + "\x90");
  // The offset is the opening bracket that goes one level too deep.
  expect_error(nest(129), 128, "nesting deeper than 128");
  expect_error(std::string(100000, '['), 128, "nesting deeper than 128");
  // Objects count as well.
  std::string obj;
  for (int i = 0; i < 129; ++i) obj += "{\"a\":";
  obj += "1" + std::string(129, '}');
  expect_error(obj, 128 * 5, "nesting deeper than 128");
  // A custom limit.
  EXPECT_NO_THROW(json_to_msgpack("[[1]]", 2));
  expect_error("[[[1]]]", 2, "nesting deeper than 2", 2);
  expect_error(" [1]", 1, "nesting deeper than 0", 0);
  EXPECT_EQ(hex(json_to_msgpack("1", 0)), "01");
  // nlohmann's parser and our packer are iterative: deep input does not touch the C++ stack.
  const std::size_t deep = 200000;
  const std::string bytes = json_to_msgpack(nest(deep), deep);
  EXPECT_EQ(bytes.size(), deep);
  EXPECT_EQ(bytes.substr(0, 3), "\x91\x91\x91");
}

// Offsets point at the byte where nlohmann's parser found the problem; the reason is its
// message without the "[json.exception...] parse error at line, column" prefix.
TEST(CliJsonParse, SyntaxErrorsReportByteOffsets) {
  expect_error("", 0, "unexpected end of input; expected '[', '{', or a literal");
  expect_error("   ", 3, "unexpected end of input");
  expect_error("[1,]", 3, "unexpected ']'");
  expect_error("[1 2]", 3, "syntax error while parsing array - unexpected number literal");
  expect_error("[1", 2, "unexpected end of input; expected ']'");
  expect_error("[", 1, "unexpected end of input");
  expect_error("{\"a\" 1}", 5, "expected ':'");
  expect_error("{\"a\":1,}", 7, "parsing object key - unexpected '}'; expected string literal");
  expect_error("{\"a\":1 \"b\":2}", 9, "unexpected string literal; expected '}'");
  expect_error("{1:2}", 1, "parsing object key - unexpected number literal");
  expect_error("{'a':2}", 1, "parsing object key - invalid literal");
  expect_error("{\"a\":1", 6, "unexpected end of input; expected '}'");
  expect_error("[1]]", 3, "unexpected ']'; expected end of input");
  expect_error("[1] x", 4, "invalid literal; last read: '1] x'; expected end of input");
  expect_error("1 2", 2, "expected end of input");
  expect_error("tru", 3, "invalid literal; last read: 'tru'");
  expect_error("nul", 3, "invalid literal; last read: 'nul'");
  expect_error("True", 0, "invalid literal; last read: 'T'");
  expect_error("truex", 4, "expected end of input");
  expect_error("NaN", 0, "invalid literal; last read: 'N'");
  expect_error("Infinity", 0, "invalid literal; last read: 'I'");
  expect_error("-Infinity", 1, "expected digit after '-'");
  expect_error("// c\n1", 0, "invalid literal; last read: '/'");  // no comments
  expect_error("\f1", 0, "last read: '<U+000C>'");
  expect_error("\xFF", 0, "last read: '\\xff'");  // bytes outside ASCII shown escaped
  // A UTF-8 byte order mark is skipped (RFC 8259 allows it).
  EXPECT_EQ(hex(json_to_msgpack("\xEF\xBB\xBF" "1")), "01");
}

TEST(CliJsonParse, NumberErrors) {
  expect_error("01", 1, "unexpected number literal; expected end of input");  // leading zero
  expect_error("-01", 2, "unexpected number literal; expected end of input");
  expect_error("1.", 2, "expected digit after '.'");
  expect_error("1.e5", 2, "expected digit after '.'");
  expect_error(".5", 0, "invalid literal; last read: '.'");
  expect_error("+1", 0, "invalid literal; last read: '+'");
  expect_error("-", 1, "expected digit after '-'");
  expect_error("- 1", 1, "expected digit after '-'");
  expect_error("1e", 2, "expected '+', '-', or digit after exponent");
  expect_error("1e+", 3, "expected digit after exponent sign");
  expect_error("0x10", 1, "expected end of input");
  // Overflowing a double: the offset is the number's first byte.
  expect_error("1e400", 0, "number overflow parsing '1e400'");
  expect_error("[0, -1e400]", 4, "number overflow parsing '-1e400'");
}

TEST(CliJsonParse, StringErrors) {
  expect_error("\"abc", 4, "missing closing quote");
  expect_error("[\"abc\\", 6, "forbidden character after backslash");
  expect_error("\"a\x01\"", 2, "control character U+0001 (SOH) must be escaped");
  expect_error("\"a\nb\"", 2, "control character U+000A (LF) must be escaped");
  expect_error("\"a\tb\"", 2, "control character U+0009 (HT) must be escaped");
  expect_error(R"("\x")", 2, "forbidden character after backslash");
  expect_error(R"("\U0041")", 2, "forbidden character after backslash");
  expect_error("\"\\\x01\"", 2, "forbidden character after backslash");
  expect_error(R"("\u12G4")", 5, "'\\u' must be followed by 4 hex digits");
  expect_error(R"("\u12")", 5, "'\\u' must be followed by 4 hex digits");
  expect_error(R"("ab\u)", 5, "'\\u' must be followed by 4 hex digits");
  // Surrogates must pair up.
  const std::string high = "surrogate U+D800..U+DBFF must be followed by U+DC00..U+DFFF";
  expect_error(R"("\uD83D")", 7, high);
  expect_error(R"("\uD83Dx")", 7, high);
  expect_error(R"("\uD83D\n")", 8, high);
  expect_error(R"("\uD83D\u0041")", 12, high);
  expect_error(R"("\uD83D\uD83D")", 12, high);
  expect_error(R"("\uD83D\uZZZZ")", 9, "'\\u' must be followed by 4 hex digits");
  const std::string low = "surrogate U+DC00..U+DFFF must follow U+D800..U+DBFF";
  expect_error(R"("\uDE00")", 6, low);
  expect_error(R"("x\uDE00\uD83D")", 7, low);
}

TEST(CliJsonParse, InvalidUtf8IsAnError) {
  const std::string bad = "invalid string: ill-formed UTF-8 byte";
  expect_error("\"\xFF\"", 1, bad);
  expect_error("\"ab\x80\"", 3, bad);          // stray continuation byte
  expect_error("\"\xC0\x80\"", 1, bad);        // overlong NUL
  expect_error("\"\xE0\x80\x80\"", 2, bad);    // overlong
  expect_error("\"\xED\xA0\x80\"", 2, bad);    // encoded surrogate
  expect_error("\"\xF4\x90\x80\x80\"", 2, bad);  // above U+10FFFF
  expect_error("\"\xC3\"", 2, bad);            // truncated
  expect_error("\"x\xE2\x82\"", 4, bad);       // truncated
  expect_error("\"\xF0\x9F\x98", 4, bad);      // truncated at the end
  expect_error("\xFF", 0, "invalid literal");
}

TEST(CliJsonParse, DocumentsPackInOrder) {
  using pyvisor::gateway::document_to_msgpack;
  using pyvisor::gateway::json;
  // Keys in document order (ordered_json), not sorted; -0 is the integer 0.
  EXPECT_EQ(hex(document_to_msgpack(json::parse(R"({"z":1,"a":[true,null,"s",-0]})"))),
            "82a17a01a16194c3c0a17300");
  // A document built in C++.
  json doc = {{"k", 1.0}, {"u", std::uint64_t{1} << 63}};
  EXPECT_EQ(hex(document_to_msgpack(doc)), "82a16bcb3ff0000000000000a175cf8000000000000000");
}

// ---------------------------------------------------------------------------------------------
// msgpack -> JSON
// ---------------------------------------------------------------------------------------------

TEST(CliJsonRender, Scalars) {
  EXPECT_EQ(render(packed(msgpack::type::nil_t())), "null");
  EXPECT_EQ(render(packed(true)), "true");
  EXPECT_EQ(render(packed(false)), "false");
  EXPECT_EQ(render(packed(0)), "0");
  EXPECT_EQ(render(packed(-1)), "-1");
  EXPECT_EQ(render(packed(std::numeric_limits<std::uint64_t>::max())), "18446744073709551615");
  EXPECT_EQ(render(packed(std::numeric_limits<std::int64_t>::min())), "-9223372036854775808");
  EXPECT_EQ(render(packed(std::numeric_limits<std::int64_t>::max())), "9223372036854775807");
}

TEST(CliJsonRender, FloatsAreShortestRoundTrip) {
  EXPECT_EQ(render(packed_double(1.5)), "1.5");
  EXPECT_EQ(render(packed_double(0.1)), "0.1");
  EXPECT_EQ(render(packed_double(1.0)), "1.0");
  EXPECT_EQ(render(packed_double(100.0)), "100.0");
  EXPECT_EQ(render(packed_double(-3.0)), "-3.0");
  EXPECT_EQ(render(packed_double(0.0)), "0.0");
  EXPECT_EQ(render(packed_double(-0.0)), "-0.0");
  EXPECT_EQ(render(packed_double(1e300)), "1e+300");
  EXPECT_EQ(render(packed_double(1e-7)), "1e-07");
  EXPECT_EQ(render(packed_double(123456789.125)), "123456789.125");
  EXPECT_EQ(render(packed_double(std::numeric_limits<double>::denorm_min())), "5e-324");
  EXPECT_EQ(render(packed_double(std::numeric_limits<double>::max())), "1.7976931348623157e+308");
  // float 32 is accepted (rendered as its exact double value).
  EXPECT_EQ(render(unhex("ca3f000000")), "0.5");
  EXPECT_EQ(render(unhex("ca3f800000")), "1.0");
  // Every rendering parses back to the same double.
  for (const double d : {0.1, 1.0 / 3.0, 2.0 / 3.0, 1e23, 9007199254740993.0, 4.35, 1e-300}) {
    EXPECT_EQ(json_to_msgpack(render(packed_double(d))), packed_double(d)) << d;
  }
}

TEST(CliJsonRender, NonFiniteFloatsAreTagged) {
  // Not strings: "NaN" the string and NaN the float render differently.
  EXPECT_EQ(render(packed_double(std::numeric_limits<double>::quiet_NaN())), R"({"$float":"nan"})");
  EXPECT_EQ(render(packed_double(-std::numeric_limits<double>::quiet_NaN())), R"({"$float":"nan"})");
  EXPECT_EQ(render(packed_double(std::numeric_limits<double>::infinity())), R"({"$float":"inf"})");
  EXPECT_EQ(render(packed_double(-std::numeric_limits<double>::infinity())), R"({"$float":"-inf"})");
  EXPECT_EQ(render(unhex("ca7f800000")), R"({"$float":"inf"})");  // float 32
  EXPECT_EQ(render(unhex("caff800000")), R"({"$float":"-inf"})");
  EXPECT_EQ(render(unhex("ca7fc00000")), R"({"$float":"nan"})");
  EXPECT_EQ(render(str("NaN")), R"("NaN")");
}

TEST(CliJsonRender, StringsEscapeControlCharacters) {
  EXPECT_EQ(render(str("")), "\"\"");
  EXPECT_EQ(render(str("abc")), "\"abc\"");
  EXPECT_EQ(render(str("\"\\/")), R"("\"\\/")");
  EXPECT_EQ(render(str("\b\f\n\r\t")), R"("\b\f\n\r\t")");
  EXPECT_EQ(render(str(std::string_view("\0\x01\x1f\x7f", 4))), "\"\\u0000\\u0001\\u001f\x7f\"");
  // UTF-8 is kept as is (no \u escapes), including U+2028 and U+10FFFF.
  EXPECT_EQ(render(str("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xE2\x80\xA8\xF4\x8F\xBF\xBF")),
            "\"\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xE2\x80\xA8\xF4\x8F\xBF\xBF\"");
  EXPECT_EQ(dump_json(pyvisor::gateway::json("a\"b")), R"("a\"b")");
}

TEST(CliJsonRender, InvalidUtf8BecomesReplacementCharacters) {
  const std::string fffd = "\xEF\xBF\xBD";
  // Same results as Python's bytes.decode("utf-8", "replace") (maximal subparts).
  EXPECT_EQ(render(str("\xFF")), "\"" + fffd + "\"");
  EXPECT_EQ(render(str("a\x80" "b")), "\"a" + fffd + "b\"");
  EXPECT_EQ(render(str("a\xC3")), "\"a" + fffd + "\"");
  EXPECT_EQ(render(str("\xC3" "a")), "\"" + fffd + "a\"");
  EXPECT_EQ(render(str("\xC0\xAF")), "\"" + fffd + fffd + "\"");
  EXPECT_EQ(render(str("\xE0\x80\x80")), "\"" + fffd + fffd + fffd + "\"");
  EXPECT_EQ(render(str("\xED\xA0\x80")), "\"" + fffd + fffd + fffd + "\"");
  EXPECT_EQ(render(str("\xF4\x90\x80\x80")), "\"" + fffd + fffd + fffd + fffd + "\"");
  EXPECT_EQ(render(str("\xF0\x9F\x98")), "\"" + fffd + "\"");
  EXPECT_EQ(render(str("\xF0\x9F\x98\n")), "\"" + fffd + "\\n\"");
  EXPECT_EQ(render(str("\xE2\x82\xAC\xE2\x82")), "\"\xE2\x82\xAC" + fffd + "\"");
}

TEST(CliJsonRender, IsValidUtf8) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8(std::string_view("a\0b", 3)));
  EXPECT_TRUE(is_valid_utf8("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF\xED\x9F\xBF"));
  EXPECT_FALSE(is_valid_utf8("\xFF"));
  EXPECT_FALSE(is_valid_utf8("a\x80"));
  EXPECT_FALSE(is_valid_utf8("\xC0\x80"));
  EXPECT_FALSE(is_valid_utf8("\xC3"));
  EXPECT_FALSE(is_valid_utf8("\xE0\x9F\xBF"));      // overlong
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));      // surrogate
  EXPECT_FALSE(is_valid_utf8("\xF4\x90\x80\x80"));  // above U+10FFFF
  EXPECT_FALSE(is_valid_utf8("\xF5\x80\x80\x80"));
}

TEST(CliJsonRender, BinIsBase64) {
  EXPECT_EQ(render(bin("")), R"({"$bytes":""})");
  EXPECT_EQ(render(bin("f")), R"({"$bytes":"Zg=="})");
  EXPECT_EQ(render(bin("fo")), R"({"$bytes":"Zm8="})");
  EXPECT_EQ(render(bin("foo")), R"({"$bytes":"Zm9v"})");
  EXPECT_EQ(render(bin("foob")), R"({"$bytes":"Zm9vYg=="})");
  EXPECT_EQ(render(bin("fooba")), R"({"$bytes":"Zm9vYmE="})");
  EXPECT_EQ(render(bin("foobar")), R"({"$bytes":"Zm9vYmFy"})");
  EXPECT_EQ(render(bin(std::string_view("\xFF\xFE\x00\xFB\xEF", 5))), R"({"$bytes":"//4A++8="})");
  EXPECT_EQ(base64_encode(std::string(3, '\0')), "AAAA");
}

TEST(CliJsonRender, ArraysAndMaps) {
  EXPECT_EQ(render(array_header(0)), "[]");
  EXPECT_EQ(render(map_header(0)), "{}");
  EXPECT_EQ(render(array_header(3) + packed(1) + str("a") + array_header(0)), R"([1,"a",[]])");
  EXPECT_EQ(render(map_header(2) + str("a") + packed(1) + str("b") + map_header(1) + str("c") +
                   array_header(2) + packed(true) + packed(msgpack::type::nil_t())),
            R"({"a":1,"b":{"c":[true,null]}})");
  EXPECT_EQ(render(map_header(1) + str("q\"uote") + packed(1)), R"({"q\"uote":1})");
}

TEST(CliJsonRender, OtherMapsAreTaggedPairLists) {
  // A key that is not a str: {"$map": [[key, value], ...]}, keys rendered like values.
  EXPECT_EQ(render(map_header(1) + packed(1) + str("a")), R"({"$map":[[1,"a"]]})");
  EXPECT_EQ(render(map_header(1) + packed_double(2.0) + packed(0)), R"({"$map":[[2.0,0]]})");
  EXPECT_EQ(render(map_header(1) + packed(msgpack::type::nil_t()) + packed(0)), R"({"$map":[[null,0]]})");
  EXPECT_EQ(render(map_header(2) + packed(true) + packed(1) + packed(false) + packed(0)),
            R"({"$map":[[true,1],[false,0]]})");
  EXPECT_EQ(render(map_header(1) + ext(1, array_header(2) + packed(1) + str("x")) + packed(0)),
            R"({"$map":[[{"$tuple":[1,"x"]},0]]})");
  EXPECT_EQ(render(map_header(1) + bin("ab") + packed(0)), R"({"$map":[[{"$bytes":"YWI="},0]]})");
  EXPECT_EQ(render(map_header(1) + packed_double(std::numeric_limits<double>::quiet_NaN()) + packed(0)),
            R"({"$map":[[{"$float":"nan"},0]]})");
  // The defect this fixes: {1: "a", "1": "b"} printed {"1":"a","1":"b"} (two equal keys).
  EXPECT_EQ(render(map_header(2) + packed(1) + str("a") + str("1") + str("b")),
            R"({"$map":[[1,"a"],["1","b"]]})");
  // A str key beginning with "$" (it would read back as a tag), and repeated str keys.
  EXPECT_EQ(render(map_header(1) + str("$bytes") + str("x")), R"({"$map":[["$bytes","x"]]})");
  EXPECT_EQ(render(map_header(2) + str("a") + packed(1) + str("$") + packed(2)),
            R"({"$map":[["a",1],["$",2]]})");
  EXPECT_EQ(render(map_header(2) + str("k") + packed(1) + str("k") + packed(2)),
            R"({"$map":[["k",1],["k",2]]})");
  // "$" inside a key, or a value that looks like a tag, is fine.
  EXPECT_EQ(render(map_header(2) + str("a$") + str("$int") + str(" $") + packed(0)),
            R"({"a$":"$int"," $":0})");
  // Nested: a map inside a key, a plain object inside a $map value.
  EXPECT_EQ(render(map_header(1) + map_header(1) + packed(2) + packed(3) + map_header(1) +
                   str("v") + packed(1)),
            R"({"$map":[[{"$map":[[2,3]]},{"v":1}]]})");
  EXPECT_EQ(render(map_header(3) + str("s") + array_header(1) + packed(1) + packed(7) +
                   map_header(0) + ext(4, unhex("010000000000000000")) + packed(2)),
            R"({"$map":[["s",[1]],[7,{}],[{"$int":"18446744073709551616"},2]]})");
}

TEST(CliJsonRender, TuplesAndSetsAreTagged) {
  const std::string items = array_header(2) + packed(1) + str("x");
  EXPECT_EQ(render(ext(1, items)), R"({"$tuple":[1,"x"]})");
  EXPECT_EQ(render(ext(2, items)), R"({"$set":[1,"x"]})");
  EXPECT_EQ(render(ext(3, items)), R"({"$frozenset":[1,"x"]})");
  EXPECT_EQ(render(ext(1, array_header(0))), R"({"$tuple":[]})");
  EXPECT_EQ(render(ext(1, array_header(1) + packed(5))), R"({"$tuple":[5]})");  // fixext 2
  // Nested: a tuple holding a frozenset, a tuple and a list.
  const std::string inner = ext(3, array_header(1) + packed(2));
  const std::string nested = ext(1, array_header(3) + inner + ext(1, array_header(0)) +
                                        array_header(1) + ext(1, array_header(1) + packed(3)));
  EXPECT_EQ(render(nested), R"({"$tuple":[{"$frozenset":[2]},{"$tuple":[]},[{"$tuple":[3]}]]})");
  EXPECT_EQ(render(array_header(2) + nested + packed(9)),
            R"([{"$tuple":[{"$frozenset":[2]},{"$tuple":[]},[{"$tuple":[3]}]]},9])");
}

TEST(CliJsonRender, ValueOverloadKeepsTuples) {
  // value::plain() has tuples as lists; the value overload renders the object as received.
  auto v = pyvisor::value_from_msgpack(ext(1, array_header(1) + ext(2, array_header(0))));
  ASSERT_TRUE(v) << v.error().to_string();
  EXPECT_EQ(pyvisor::gateway::to_json(*v), R"({"$tuple":[{"$set":[]}]})");
  EXPECT_EQ(to_json(v->plain()), "[[]]");
}

TEST(CliJsonRender, MalformedContainerExtsFallBackToGenericExt) {
  // Not an array.
  EXPECT_EQ(render(ext(1, packed(1))), R"({"$ext":1,"$data":"AQ=="})");
  // Trailing bytes after the array.
  EXPECT_EQ(render(ext(2, array_header(0) + packed(1))), R"({"$ext":2,"$data":"kAE="})");
  // Truncated.
  EXPECT_EQ(render(ext(3, array_header(2) + packed(1))), R"({"$ext":3,"$data":"kgE="})");
  // Empty payload (a tuple; and a bigint without bytes).
  EXPECT_EQ(render(ext(1, "")), R"({"$ext":1,"$data":""})");
  EXPECT_EQ(render(ext(4, "")), R"({"$ext":4,"$data":""})");
  // A huge declared count is rejected without allocating for it.
  EXPECT_EQ(render(ext(1, unhex("ddffffffff"))), R"({"$ext":1,"$data":"3f////8="})");
}

TEST(CliJsonRender, BigintsBeyond64BitsAreTagged) {
  EXPECT_EQ(render(ext(4, unhex("010000000000000000"))), R"({"$int":"18446744073709551616"})");  // 2^64
  EXPECT_EQ(render(ext(4, unhex("ff0000000000000000"))), R"({"$int":"-18446744073709551616"})");
  EXPECT_EQ(render(ext(4, unhex("01" + std::string(50, '0')))),  // 2^200
            R"({"$int":"1606938044258990275541962092341162602522202993782792835301376"})");
  EXPECT_EQ(render(ext(4, unhex("ff" + std::string(50, '0')))),
            R"({"$int":"-1606938044258990275541962092341162602522202993782792835301376"})");
  EXPECT_EQ(render(ext(4, unhex("ff7fffffffffffffff"))), R"({"$int":"-9223372036854775809"})");
  EXPECT_EQ(render(ext(4, unhex("fcc4d1c3602f7fc317fffff9"))),
            R"({"$int":"-1000000000000000000000000007"})");
  // An ext 4 whose value fits 64 bits (not minimal) is a plain number.
  EXPECT_EQ(render(ext(4, unhex("00ffffffffffffffff"))), "18446744073709551615");
  EXPECT_EQ(render(ext(4, unhex("ff"))), "-1");
  EXPECT_EQ(render(ext(4, unhex("0000000000000000000005"))), "5");
  EXPECT_EQ(render(ext(4, unhex("8000000000000000"))), "-9223372036854775808");
}

TEST(CliJsonRender, TwosComplementToDecimal) {
  EXPECT_EQ(twos_complement_to_decimal(""), "0");
  EXPECT_EQ(twos_complement_to_decimal(unhex("00")), "0");
  EXPECT_EQ(twos_complement_to_decimal(unhex("0000000000")), "0");
  EXPECT_EQ(twos_complement_to_decimal(unhex("ff")), "-1");
  EXPECT_EQ(twos_complement_to_decimal(unhex("ffffffffffff")), "-1");
  EXPECT_EQ(twos_complement_to_decimal(unhex("7f")), "127");
  EXPECT_EQ(twos_complement_to_decimal(unhex("80")), "-128");
  EXPECT_EQ(twos_complement_to_decimal(unhex("ff80")), "-128");
  EXPECT_EQ(twos_complement_to_decimal(unhex("0080")), "128");
  EXPECT_EQ(twos_complement_to_decimal(unhex("8000000000000000")), "-9223372036854775808");
  EXPECT_EQ(twos_complement_to_decimal(unhex("3b9aca00")), "1000000000");         // 10^9
  EXPECT_EQ(twos_complement_to_decimal(unhex("3b9ac9ff")), "999999999");
  EXPECT_EQ(twos_complement_to_decimal(unhex("0de0b6b3a7640001")), "1000000000000000001");
  EXPECT_EQ(twos_complement_to_decimal(unhex("0de0b6b3a7640000")), "1000000000000000000");
  // 2^200 - 1 and -(2^200) + 1: the ends of the borrow/carry chains.
  EXPECT_EQ(twos_complement_to_decimal(unhex("00" + std::string(50, 'f'))),
            "1606938044258990275541962092341162602522202993782792835301375");
  EXPECT_EQ(twos_complement_to_decimal(unhex("ff" + std::string(49, '0') + "1")),
            "-1606938044258990275541962092341162602522202993782792835301375");
}

TEST(CliJsonRender, OtherExtsAreGeneric) {
  EXPECT_EQ(render(ext(5, "abc")), R"({"$ext":5,"$data":"YWJj"})");
  EXPECT_EQ(render(ext(0, "")), R"({"$ext":0,"$data":""})");
  EXPECT_EQ(render(ext(-1, std::string(4, '\0'))), R"({"$ext":-1,"$data":"AAAAAA=="})");
  EXPECT_EQ(render(ext(127, "\xFF")), R"({"$ext":127,"$data":"/w=="})");
}

TEST(CliJsonRender, NestingIsBounded) {
  using pyvisor::gateway::max_render_depth;
  const auto arrays = [](std::size_t depth) { return std::string(depth - 1, '\x91') + "\x90"; };
  EXPECT_EQ(render(arrays(max_render_depth)),
            std::string(max_render_depth, '[') + std::string(max_render_depth, ']'));
  std::string maps;
  for (std::size_t i = 0; i < max_render_depth; ++i) maps += map_header(1) + str("k");
  maps += packed(1);
  std::string expected;
  for (std::size_t i = 0; i < max_render_depth; ++i) expected += "{\"k\":";
  expected += "1" + std::string(max_render_depth, '}');
  EXPECT_EQ(render(maps), expected);
  // Deeper than any value from Python can be (the frame limit is 128): refused.
  const std::string too_deep = arrays(max_render_depth + 1);
  std::size_t off = 0;
  msgpack::object_handle oh = msgpack::unpack(too_deep.data(), too_deep.size(), off);
  EXPECT_THROW(to_json(oh.get()), std::length_error);
}

// ---------------------------------------------------------------------------------------------
// Tags: JSON -> msgpack, and the round trips
// ---------------------------------------------------------------------------------------------

/// Expects json_to_msgpack(text) to fail on a tag (no byte offset) with a message holding `part`.
void expect_tag_error(std::string_view text, std::string_view part) {
  try {
    const std::string out = json_to_msgpack(text);
    ADD_FAILURE() << "no error for <" << text << ">, got " << hex(out);
  } catch (const json_error& e) {
    EXPECT_FALSE(e.has_offset()) << "<" << text << ">: " << e.what();
    EXPECT_NE(std::string(e.what()).find(part), std::string::npos)
        << "<" << text << ">: '" << e.what() << "' lacks '" << part << "'";
  }
}

TEST(JsonTags, DecodeToTheValuesTheyRenderFrom) {
  EXPECT_EQ(hex(json_to_msgpack(R"({"$bytes":"AP8="})")), "c40200ff");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$bytes":""})")), "c400");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$tuple":[1,"x"]})")), "d6019201a178");  // fixext 4
  EXPECT_EQ(hex(json_to_msgpack(R"({"$set":[]})")), "d40290");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$frozenset":[{"$tuple":[]}]})")), "d60391d40190");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$int":"18446744073709551616"})")), "c70904010000000000000000");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$int":"-9223372036854775809"})")), "c70904ff7fffffffffffffff");
  // Integers that fit 64 bits are plain ints.
  EXPECT_EQ(hex(json_to_msgpack(R"({"$int":"5"})")), "05");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$int":"0"})")), "00");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$int":"-1"})")), "ff");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$int":"18446744073709551615"})")), "cfffffffffffffffff");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$float":"nan"})")), "cb7ff8000000000000");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$float":"inf"})")), "cb7ff0000000000000");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$float":"-inf"})")), "cbfff0000000000000");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$map":[[1,"a"],["1","b"]]})")), "8201a161a131a162");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$map":[]})")), "80");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$map":[[{"$tuple":[1]},{"$map":[[null,2]]}]]})")), "81d5019101" "81c002");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$ext":5,"$data":"YWJj"})")), "c7030561626" "3");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$data":"","$ext":-1})")), "c700ff");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$ext":-128,"$data":"AA=="})")), "d48000");
  EXPECT_EQ(hex(json_to_msgpack(R"({"$ext":127,"$data":""})")), "c7007f");
  // Tags inside plain containers and plain containers inside tags.
  EXPECT_EQ(hex(json_to_msgpack(R"({"a":[{"$tuple":[{"b":{"$bytes":"Zg=="}}]}]})")),
            "81a16191" "c70701" "9181a162c40166");
  // Payloads past 255 bytes get an ext 16 header; an outer payload is sized after the inner
  // one got its header.
  std::string zeros = "[0";
  for (int i = 1; i < 300; ++i) zeros += ",0";
  zeros += "]";
  EXPECT_EQ(hex(json_to_msgpack(R"({"$tuple":)" + zeros + "}").substr(0, 7)), "c8012f01dc012c");
  const std::string nested = json_to_msgpack(R"({"$set":[{"$tuple":)" + zeros + "}]}");
  EXPECT_EQ(nested.size(), 4u + 1u + 4u + 303u);
  EXPECT_EQ(hex(nested.substr(0, 12)), "c8013402" "91" "c8012f01" "dc012c");
}

TEST(JsonTags, MalformedTagsAreErrors) {
  expect_tag_error(R"({"$bytes":5})", R"("$bytes": expected a base64 string, got a number)");
  expect_tag_error(R"({"$bytes":null})", "got null");
  expect_tag_error(R"({"$bytes":"Zg="})", "invalid base64: length 3 is not a multiple of 4");
  expect_tag_error(R"({"$bytes":"Zg!="})", "invalid base64: unexpected '!' at offset 2");
  expect_tag_error(R"({"$bytes":"Zh=="})", "the unused bits of the last group are not zero");
  expect_tag_error(R"({"$bytes":"=Zg="})", "unexpected '=' at offset 0");
  expect_tag_error(R"({"$bytes":"Zg==Zg=="})", "unexpected '=' at offset 2");
  expect_tag_error(R"({"$bytes":"Zm9 YmFy"})", "unexpected ' ' at offset 3");
  expect_tag_error(R"({"$bytes":"Zm9-"})", "unexpected '-'");  // no URL alphabet
  expect_tag_error(R"({"$int":"12x"})",
                   R"("$int": expected decimal digits with an optional '-' and no leading zeros, got "12x")");
  for (const char* bad : {R"("")", R"("-")", R"("+1")", R"("01")", R"("-0")", R"(" 1")", R"("1e5")", R"("1.0")"}) {
    expect_tag_error(std::string(R"({"$int":)") + bad + "}", "expected decimal digits");
  }
  expect_tag_error(R"({"$int":12})", R"("$int": expected a string of decimal digits, got a number)");
  expect_tag_error(R"({"$int":")" + std::string(pyvisor::gateway::max_int_digits + 1, '7') + "\"}",
                   "20001 digits, more than the 20000 allowed");
  expect_tag_error(R"({"$float":"NaN"})", R"("$float": expected "nan", "inf" or "-inf", got "NaN")");
  expect_tag_error(R"({"$float":1.5})", "got a number");
  expect_tag_error(R"({"$tuple":{}})", R"("$tuple": expected an array, got an object)");
  expect_tag_error(R"({"$set":"x"})", R"("$set": expected an array, got a string)");
  expect_tag_error(R"({"$frozenset":null})", R"("$frozenset": expected an array, got null)");
  expect_tag_error(R"({"$map":{}})", R"("$map": expected an array of [key, value] pairs, got an object)");
  expect_tag_error(R"({"$map":[[1]]})", R"("$map": item 0 is not a [key, value] pair)");
  expect_tag_error(R"({"$map":[[1,2],3]})", "item 1 is not a [key, value] pair");
  expect_tag_error(R"({"$map":[[1,2,3]]})", "item 0 is not a [key, value] pair");
  expect_tag_error(R"({"$ext":5})", R"("$ext" without "$data")");
  expect_tag_error(R"({"$data":"AA=="})", R"("$data" without "$ext")");
  expect_tag_error(R"({"$ext":128,"$data":""})", R"("$ext": expected an integer type code in -128..127, got 128)");
  expect_tag_error(R"({"$ext":-129,"$data":""})", "got -129");
  expect_tag_error(R"({"$ext":18446744073709551615,"$data":""})", "got 18446744073709551615");
  expect_tag_error(R"({"$ext":-9223372036854775808,"$data":""})", "got -9223372036854775808");
  expect_tag_error(R"({"$ext":"5","$data":""})", "got a string");
  expect_tag_error(R"({"$ext":1.0,"$data":""})", "got 1.0");
  expect_tag_error(R"({"$ext":5,"$data":5})", R"("$data": expected a base64 string, got a number)");
  expect_tag_error(R"({"$ext":5,"$data":"A"})", R"("$data": invalid base64)");
  // Unknown "$" keys: the format stays unambiguous.
  expect_tag_error(R"({"$foo":1})", R"(unknown tag "$foo" (keys beginning with "$" are reserved)");
  expect_tag_error(R"({"a":1,"$b":2})", R"(unknown tag "$b")");
  expect_tag_error(R"({"$":1})", R"(unknown tag "$")");
  expect_tag_error(R"({"$Bytes":""})", R"(unknown tag "$Bytes")");
  // A tag object has nothing else.
  expect_tag_error(R"({"$bytes":"","x":1})", R"(tag "$bytes" with another key "x")");
  expect_tag_error(R"({"x":1,"$tuple":[]})", R"(tag "$tuple" with another key "x")");
  expect_tag_error(R"({"$tuple":[],"$set":[]})", R"(tag "$tuple" with another key "$set")");
  expect_tag_error(R"({"$ext":1,"$data":"","x":0})", R"(with another key "x")");
}

TEST(JsonTags, ErrorsSayWhere) {
  expect_tag_error(R"({"a":[1,{"$int":"x"}]})", R"(got "x" (at /a/1))");
  expect_tag_error(R"({"$tuple":[0,{"$bytes":1}]})", "(at /$tuple/1)");
  expect_tag_error(R"({"$map":[[{"$float":"x"},1]]})", "(at /$map/0/0)");
  expect_tag_error(R"({"$map":[[1,{"$q":1}]]})", "(at /$map/0/1)");
  expect_tag_error(R"({"a/b~":{"$x":1}})", "(at /a~1b~0)");
  expect_tag_error(R"([[[{"$set":[{"$x":0}]}]]])", "(at /0/0/0/$set/0)");
  // At the top: no position.
  try {
    json_to_msgpack(R"({"$x":1})");
    ADD_FAILURE();
  } catch (const json_error& e) {
    EXPECT_EQ(std::string(e.what()).find("(at"), std::string::npos) << e.what();
    EXPECT_EQ(e.offset(), json_error::npos);
  }
}

TEST(JsonTags, Base64Decode) {
  using pyvisor::gateway::base64_decode;
  std::string why;
  EXPECT_EQ(base64_decode("", why), "");
  EXPECT_EQ(base64_decode("Zg==", why), "f");
  EXPECT_EQ(base64_decode("Zm8=", why), "fo");
  EXPECT_EQ(base64_decode("Zm9v", why), "foo");
  EXPECT_EQ(base64_decode("Zm9vYmFy", why), "foobar");
  EXPECT_EQ(base64_decode("//4A++8=", why), std::string("\xFF\xFE\x00\xFB\xEF", 5));
  // Every byte value and every length round-trips with base64_encode.
  std::string all;
  for (int c = 0; c < 256; ++c) all += static_cast<char>(c);
  for (std::size_t n = 0; n <= all.size(); n += 37) {
    const std::string part = all.substr(all.size() - n);
    EXPECT_EQ(base64_decode(base64_encode(part), why), part) << n;
  }
  EXPECT_FALSE(base64_decode("Zg=", why));
  EXPECT_FALSE(base64_decode("Zm9=", why));  // unused bits
  EXPECT_FALSE(base64_decode("====", why));
  EXPECT_FALSE(base64_decode("Z===", why));
  EXPECT_FALSE(base64_decode("Zg\n=", why));
  EXPECT_EQ(why, "unexpected \\x0a at offset 2");
}

/// msgpack values as Python sends them (minimal ints, float 64, tuples as ext 1-3, ...):
/// rendering then reading back gives the same bytes.
TEST(JsonTags, RenderThenParseGivesTheSameBytes) {
  const std::string tuple12 = ext(1, array_header(2) + packed(1) + packed(2));
  const std::vector<std::string> values = {
      packed(msgpack::type::nil_t()), packed(true), packed(0), packed(-33), packed(300),
      packed(std::numeric_limits<std::uint64_t>::max()), packed(std::numeric_limits<std::int64_t>::min()),
      packed_double(1.0), packed_double(-0.0), packed_double(0.1), packed_double(1e300),
      packed_double(std::numeric_limits<double>::quiet_NaN()),
      packed_double(std::numeric_limits<double>::infinity()),
      packed_double(-std::numeric_limits<double>::infinity()),
      str(""), str("NaN"), str("$int"), str("\xC3\xA9\n"), bin(""), bin(std::string("\0\xFF", 2)),
      array_header(0), map_header(0), tuple12, ext(1, array_header(0)),
      ext(2, array_header(1) + str("s")), ext(3, array_header(2) + packed(1) + tuple12),
      ext(4, unhex("010000000000000000")), ext(4, unhex("ff" + std::string(50, '0'))),
      ext(5, "handle"), ext(-7, ""),
      map_header(2) + packed(1) + str("a") + str("1") + str("b"),
      map_header(1) + str("$bytes") + bin("x"),
      map_header(2) + str("k") + packed(1) + str("k") + packed(2),
      map_header(1) + tuple12 + map_header(1) + packed_double(1.5) + array_header(0),
      map_header(2) + str("a") + tuple12 + str("b") + ext(2, array_header(0)),
      array_header(3) + bin("ab") + ext(4, unhex("01" + std::string(40, '0'))) + packed_double(2.0),
  };
  for (const std::string& v : values) {
    const std::string text = render(v);
    EXPECT_EQ(hex(json_to_msgpack(text)), hex(v)) << text;
    EXPECT_EQ(round_trip(text), text);
  }
}

TEST(JsonTags, DeepTagsPackIteratively) {
  // 2000 nested tuples (payload sizes grow from the inside out) and a $map chain.
  const std::size_t n = 2000;
  std::string text;
  for (std::size_t i = 0; i < n; ++i) text += R"({"$tuple":[)";
  text += "1";
  for (std::size_t i = 0; i < n; ++i) text += "]}";
  const std::string bytes = json_to_msgpack(text, 2 * n + 1);
  std::size_t off = 0;
  msgpack::object_handle oh = msgpack::unpack(bytes.data(), bytes.size(), off);
  ASSERT_EQ(off, bytes.size());
  // Walk it down through the library's payload decoder.
  const msgpack::object* cur = &oh.get();
  std::vector<std::unique_ptr<msgpack::zone>> zones;
  std::vector<msgpack::object> arrays;
  arrays.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(cur->type, msgpack::type::EXT) << i;
    zones.push_back(std::make_unique<msgpack::zone>());
    pyvisor::core::limits lim;
    lim.max_depth = n + 10;
    arrays.push_back(pyvisor::core::decode_ext_payload(*cur, *zones.back(), lim));
    ASSERT_EQ(arrays.back().via.array.size, 1u);
    cur = &arrays.back().via.array.ptr[0];
  }
  EXPECT_EQ(cur->type, msgpack::type::POSITIVE_INTEGER);
  // A chain of 200 $maps, each the value of the one above: reads back and renders the same.
  std::string maps;
  for (std::size_t i = 0; i < 200; ++i) maps += R"({"$map":[[0,)";
  maps += "1";
  for (std::size_t i = 0; i < 200; ++i) maps += "]]}";
  EXPECT_EQ(render(json_to_msgpack(maps, 1000)), maps);
}

} // namespace
