// Unit tests of the command-line program's JSON <-> msgpack code (cli/json_value.cpp, on
// nlohmann/json).

#include "gateway/json_value.hpp"

#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <string_view>

#include <gtest/gtest.h>
#include <msgpack.hpp>

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

TEST(CliJsonRender, NonFiniteFloatsAreStrings) {
  EXPECT_EQ(render(packed_double(std::numeric_limits<double>::quiet_NaN())), "\"NaN\"");
  EXPECT_EQ(render(packed_double(-std::numeric_limits<double>::quiet_NaN())), "\"NaN\"");
  EXPECT_EQ(render(packed_double(std::numeric_limits<double>::infinity())), "\"Infinity\"");
  EXPECT_EQ(render(packed_double(-std::numeric_limits<double>::infinity())), "\"-Infinity\"");
  EXPECT_EQ(render(unhex("ca7f800000")), "\"Infinity\"");  // float 32
  EXPECT_EQ(render(unhex("caff800000")), "\"-Infinity\"");
  EXPECT_EQ(render(unhex("ca7fc00000")), "\"NaN\"");
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

TEST(CliJsonRender, NonStringKeysBecomeTheirJsonText) {
  EXPECT_EQ(render(map_header(1) + packed(1) + str("a")), R"({"1":"a"})");
  EXPECT_EQ(render(map_header(1) + packed(-5) + str("a")), R"({"-5":"a"})");
  EXPECT_EQ(render(map_header(1) + packed_double(1.5) + packed(0)), R"({"1.5":0})");
  EXPECT_EQ(render(map_header(1) + packed_double(2.0) + packed(0)), R"({"2.0":0})");
  EXPECT_EQ(render(map_header(1) + packed(msgpack::type::nil_t()) + packed(0)), R"({"null":0})");
  EXPECT_EQ(render(map_header(2) + packed(true) + packed(1) + packed(false) + packed(0)),
            R"({"true":1,"false":0})");
  EXPECT_EQ(render(map_header(1) + array_header(2) + packed(1) + packed(2) + packed(3)),
            R"({"[1,2]":3})");
  // Strings inside a key's JSON text get escaped once more.
  EXPECT_EQ(render(map_header(1) + ext(1, array_header(2) + packed(1) + str("x")) + packed(0)),
            R"({"[1,\"x\"]":0})");
  EXPECT_EQ(render(map_header(1) + bin("ab") + packed(0)), R"({"{\"$bytes\":\"YWI=\"}":0})");
  EXPECT_EQ(render(map_header(1) + packed_double(std::numeric_limits<double>::quiet_NaN()) +
                   packed(0)),
            R"({"\"NaN\"":0})");
  // Keys within keys: the inner map's key 2 becomes "2", then the whole key is a string.
  EXPECT_EQ(render(map_header(1) + map_header(1) + packed(2) + packed(3) + packed(1)),
            R"({"{\"2\":3}":1})");
  // Mixed keys and values that are containers.
  EXPECT_EQ(render(map_header(3) + str("s") + array_header(1) + packed(1) + packed(7) +
                   map_header(0) + ext(4, unhex("010000000000000000")) + packed(2)),
            R"({"s":[1],"7":{},"18446744073709551616":2})");
}

TEST(CliJsonRender, TuplesAndSetsAreArrays) {
  const std::string items = array_header(2) + packed(1) + str("x");
  EXPECT_EQ(render(ext(1, items)), R"([1,"x"])");
  EXPECT_EQ(render(ext(2, items)), R"([1,"x"])");
  EXPECT_EQ(render(ext(3, items)), R"([1,"x"])");
  EXPECT_EQ(render(ext(1, array_header(0))), "[]");
  EXPECT_EQ(render(ext(1, array_header(1) + packed(5))), "[5]");  // fixext 2
  // Nested: a tuple holding a frozenset, a tuple and a list.
  const std::string inner = ext(3, array_header(1) + packed(2));
  const std::string nested = ext(1, array_header(3) + inner + ext(1, array_header(0)) +
                                        array_header(1) + ext(1, array_header(1) + packed(3)));
  EXPECT_EQ(render(nested), "[[2],[],[[3]]]");
  EXPECT_EQ(render(array_header(2) + nested + packed(9)), "[[[2],[],[[3]]],9]");
}

TEST(CliJsonRender, MalformedContainerExtsFallBackToGenericExt) {
  // Not an array.
  EXPECT_EQ(render(ext(1, packed(1))), R"({"$ext":1,"$data":"AQ=="})");
  // Trailing bytes after the array.
  EXPECT_EQ(render(ext(2, array_header(0) + packed(1))), R"({"$ext":2,"$data":"kAE="})");
  // Truncated.
  EXPECT_EQ(render(ext(3, array_header(2) + packed(1))), R"({"$ext":3,"$data":"kgE="})");
  // Empty payload.
  EXPECT_EQ(render(ext(1, "")), R"({"$ext":1,"$data":""})");
  // A huge declared count is rejected without allocating for it.
  EXPECT_EQ(render(ext(1, unhex("ddffffffff"))), R"({"$ext":1,"$data":"3f////8="})");
}

TEST(CliJsonRender, BigintsAreDecimalNumbers) {
  EXPECT_EQ(render(ext(4, unhex("010000000000000000"))), "18446744073709551616");    // 2^64
  EXPECT_EQ(render(ext(4, unhex("ff0000000000000000"))), "-18446744073709551616");   // -2^64
  EXPECT_EQ(render(ext(4, unhex("01" + std::string(50, '0')))),                     // 2^200
            "1606938044258990275541962092341162602522202993782792835301376");
  EXPECT_EQ(render(ext(4, unhex("ff" + std::string(50, '0')))),                     // -2^200
            "-1606938044258990275541962092341162602522202993782792835301376");
  EXPECT_EQ(render(ext(4, unhex("ff7fffffffffffffff"))), "-9223372036854775809");    // -2^63-1
  EXPECT_EQ(render(ext(4, unhex("00ffffffffffffffff"))), "18446744073709551615");
  EXPECT_EQ(render(ext(4, unhex("fcc4d1c3602f7fc317fffff9"))),
            "-1000000000000000000000000007");
  // Parses back as a (float) JSON number.
  EXPECT_EQ(json_to_msgpack(render(ext(4, unhex("010000000000000000")))),
            packed_double(18446744073709551616.0));
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

TEST(CliJsonRender, BigintMarkersCannotBeForged) {
  // A string that looks like dump_json's internal bigint marker stays a string.
  const std::string fake = str("\x01" "bigint0_0_");
  const std::string big = ext(4, unhex("01" + std::string(50, '0')));
  EXPECT_EQ(render(array_header(2) + fake + big),
            "[\"\\u0001bigint0_0_\",1606938044258990275541962092341162602522202993782792835301376]");
  EXPECT_EQ(render(map_header(1) + str("k") + array_header(2) + big + big),
            "{\"k\":[1606938044258990275541962092341162602522202993782792835301376,"
            "1606938044258990275541962092341162602522202993782792835301376]}");
}


} // namespace
