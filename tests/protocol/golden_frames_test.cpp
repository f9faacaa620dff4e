// Golden frames (tests/data/golden/, made by tests/data/make_golden.py): the C++ side decodes
// each one to exactly the rendering the Python tests check for both Python codecs, and encodes
// the host's own request frames to exactly the golden bytes.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <fstream>
#include <sstream>

#include "protocol/frame_reader.hpp"
#include "protocol/message.hpp"
#include "core/structure_check.hpp"

using namespace pyvisor;
using namespace pyvisor::protocol;
using namespace pyvisor::core;

namespace {

const std::string dir = std::string{PYVISOR_TEST_DATA_DIR} + "/golden/";

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::string hex(const char* p, std::size_t n) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (std::size_t i = 0; i < n; ++i) {
    auto c = static_cast<unsigned char>(p[i]);
    s += d[c >> 4];
    s += d[c & 15];
  }
  return s;
}

// Python's float.hex().
std::string float_hex(double x) {
  if (std::isnan(x))
    return "nan";
  if (std::isinf(x))
    return x > 0 ? "inf" : "-inf";
  std::uint64_t bits;
  std::memcpy(&bits, &x, 8);
  std::string sign = (bits >> 63) ? "-" : "";
  int exp = static_cast<int>((bits >> 52) & 0x7ff);
  std::uint64_t mant = bits & ((std::uint64_t{1} << 52) - 1);
  if (exp == 0 && mant == 0)
    return sign + "0x0.0p+0";
  char buf[64];
  if (exp == 0) {
    std::snprintf(buf, sizeof buf, "0x0.%013llxp-1022", static_cast<unsigned long long>(mant));
  } else {
    int e = exp - 1023;
    std::snprintf(buf, sizeof buf, "0x1.%013llxp%c%d", static_cast<unsigned long long>(mant),
                  e < 0 ? '-' : '+', std::abs(e));
  }
  return sign + buf;
}

// json.dumps(s, ensure_ascii=True) of a UTF-8 string.
std::string json_string(std::string_view s) {
  std::string out = "\"";
  char buf[16];
  for (std::size_t i = 0; i < s.size();) {
    auto c = static_cast<unsigned char>(s[i]);
    std::uint32_t cp;
    std::size_t len;
    if (c < 0x80) {
      cp = c, len = 1;
    } else if ((c >> 5) == 6) {
      cp = c & 0x1f, len = 2;
    } else if ((c >> 4) == 14) {
      cp = c & 0x0f, len = 3;
    } else {
      cp = c & 0x07, len = 4;
    }
    for (std::size_t k = 1; k < len && i + k < s.size(); ++k)
      cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
    i += len;
    switch (cp) {
      case '"': out += "\\\""; continue;
      case '\\': out += "\\\\"; continue;
      case '\n': out += "\\n"; continue;
      case '\r': out += "\\r"; continue;
      case '\t': out += "\\t"; continue;
      case '\b': out += "\\b"; continue;
      case '\f': out += "\\f"; continue;
      default: break;
    }
    if (cp >= 0x20 && cp < 0x7f) {
      out += static_cast<char>(cp);
    } else if (cp < 0x10000) {
      std::snprintf(buf, sizeof buf, "\\u%04x", cp);
      out += buf;
    } else {
      cp -= 0x10000;
      std::snprintf(buf, sizeof buf, "\\u%04x\\u%04x", 0xd800 + (cp >> 10), 0xdc00 + (cp & 0x3ff));
      out += buf;
    }
  }
  return out + "\"";
}

std::string render(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return o.via.boolean ? "true" : "false";
    case msgpack::type::POSITIVE_INTEGER: return std::to_string(o.via.u64);
    case msgpack::type::NEGATIVE_INTEGER: return std::to_string(o.via.i64);
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "f:" + float_hex(o.via.f64);
    case msgpack::type::STR: return json_string({o.via.str.ptr, o.via.str.size});
    case msgpack::type::BIN: return "b:" + hex(o.via.bin.ptr, o.via.bin.size);
    case msgpack::type::ARRAY: {
      std::string s = "[";
      for (std::uint32_t i = 0; i < o.via.array.size; ++i)
        s += (i ? "," : "") + render(o.via.array.ptr[i]);
      return s + "]";
    }
    case msgpack::type::MAP: {
      std::string s = "{";
      for (std::uint32_t i = 0; i < o.via.map.size; ++i)
        s += (i ? "," : "") + render(o.via.map.ptr[i].key) + ":" + render(o.via.map.ptr[i].val);
      return s + "}";
    }
    case msgpack::type::EXT:
      return "ext(" + std::to_string(o.via.ext.type()) + "," + hex(o.via.ext.data(), o.via.ext.size) + ")";
  }
  return "?";
}

struct golden {
  std::string name;
  std::string rendering;
};

std::vector<golden> manifest() {
  std::vector<golden> out;
  std::ifstream f(dir + "manifest.txt");
  std::string line;
  while (std::getline(f, line)) {
    if (line.empty() || line[0] == '#')
      continue;
    auto tab = line.find('\t');
    if (tab == std::string::npos)
      continue;
    out.push_back({line.substr(0, tab), line.substr(tab + 1)});
  }
  return out;
}

} // namespace

TEST(golden_frames, cpp_decodes_every_frame_to_the_python_rendering) {
  auto all = manifest();
  ASSERT_GE(all.size(), 20u) << "manifest missing or short: " << dir;
  for (auto& g : all) {
    auto bytes = read_file(dir + g.name + ".bin");
    frame_reader r{64 << 20};
    r.feed(bytes);
    auto fr = r.next();
    ASSERT_EQ(fr.st, frame_reader::status::frame) << g.name;
    EXPECT_EQ(r.buffered(), 0u) << g.name;
    EXPECT_FALSE(check_structure(fr.body, limits{})) << g.name;
    auto oh = msgpack::unpack(fr.body.data(), fr.body.size());
    EXPECT_EQ(render(oh.get()), g.rendering) << g.name;
  }
}

TEST(golden_frames, python_float_hex_rendering_matches) {
  EXPECT_EQ(float_hex(1.5), "0x1.8000000000000p+0");
  EXPECT_EQ(float_hex(-0.0), "-0x0.0p+0");
  EXPECT_EQ(float_hex(0.1), "0x1.999999999999ap-4");
  EXPECT_EQ(float_hex(5e-324), "0x0.0000000000001p-1022");
  EXPECT_EQ(json_string("h\xc3\xa9\n\xf0\x9f\x98\x80"), "\"h\\u00e9\\n\\ud83d\\ude00\"");
}

TEST(golden_frames, cpp_encodes_host_requests_byte_identically) {
  // Every golden request frame the host can produce is re-encoded by the C++ encoder.
  int checked = 0;
  for (auto& g : manifest()) {
    auto bytes = read_file(dir + g.name + ".bin");
    auto oh = msgpack::unpack(bytes.data() + 4, bytes.size() - 4);
    const auto& o = oh.get();
    ASSERT_EQ(o.type, msgpack::type::ARRAY) << g.name;
    ASSERT_EQ(o.via.array.size, 4u) << g.name;
    const auto* e = o.via.array.ptr;
    std::string op{e[2].via.str.ptr, e[2].via.str.size};
    auto id = e[1].via.u64;
    std::string mine;
    if (e[0].via.u64 == 0 && (op == "init" || op == "eval")) {
      const auto& p = e[3];
      vars v;
      if (auto vs = map_get(p, "vars"))
        for (std::uint32_t i = 0; i < vs->via.map.size; ++i) {
          msgpack::sbuffer b;
          msgpack::pack(b, vs->via.map.ptr[i].val);
          v.push_back({vs->via.map.ptr[i].key.as<std::string>(),
                       *arg::from_msgpack(std::string(b.data(), b.size()))});
        }
      mine = encode_code_request(id, op, map_string(p, "code"), v, map_string(p, "file"),
                                 map_get(p, "line")->as<int>());
    } else if (e[0].via.u64 == 2 && op == "cancel") {
      mine = encode_cancel(map_get(e[3], "id")->as<std::uint64_t>());
    } else if (e[0].via.u64 == 2 && op == "shutdown") {
      mine = encode_shutdown();
    } else {
      continue;
    }
    ++checked;
    EXPECT_EQ(hex(mine.data(), mine.size()), hex(bytes.data(), bytes.size())) << g.name;
  }
  EXPECT_GE(checked, 2);
}
