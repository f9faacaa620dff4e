#include "json.hpp"

#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <system_error>
#include <utility>
#include <vector>

namespace pyvisor::cli {

namespace {

/// msgpack-cxx stream that appends to a std::string.
struct string_writer {
  std::string& out;
  void write(const char* p, std::size_t n) { out.append(p, n); }
};

/// Appends `d` as msgpack float 64 (0xcb). Not packer::pack_double: msgpack-cxx 4.x packs
/// doubles with an integral value (1.0, -0.0, 1e3) as msgpack ints.
void append_float64(std::string& out, double d) {
  std::uint64_t bits = 0;
  static_assert(sizeof bits == sizeof d);
  std::memcpy(&bits, &d, sizeof d);
  out += static_cast<char>(0xCB);
  for (int shift = 56; shift >= 0; shift -= 8) {
    out += static_cast<char>((bits >> shift) & 0xFF);
  }
}

// ---------------------------------------------------------------------------------------------
// UTF-8
// ---------------------------------------------------------------------------------------------

struct utf8_step {
  std::size_t length;  ///< Valid: the sequence length. Invalid: the maximal subpart (>= 1).
  bool valid;
};

/// Decodes one UTF-8 sequence at s[i] (i < s.size()) per the Unicode "maximal subpart"
/// rules (the ones Python's errors="replace" uses): overlongs, surrogates, code points above
/// U+10FFFF and truncated sequences are invalid.
utf8_step utf8_next(std::string_view s, std::size_t i) noexcept {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return {1, true};
  std::size_t need = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c == 0xE0) {
    need = 2;
    lo = 0xA0;
  } else if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
    need = 2;
  } else if (c == 0xED) {
    need = 2;
    hi = 0x9F;
  } else if (c == 0xF0) {
    need = 3;
    lo = 0x90;
  } else if (c >= 0xF1 && c <= 0xF3) {
    need = 3;
  } else if (c == 0xF4) {
    need = 3;
    hi = 0x8F;
  } else {
    return {1, false};
  }
  for (std::size_t k = 1; k <= need; ++k) {
    if (i + k >= s.size()) return {k, false};
    const auto b = static_cast<unsigned char>(s[i + k]);
    const unsigned char l = k == 1 ? lo : 0x80;
    const unsigned char h = k == 1 ? hi : 0xBF;
    if (b < l || b > h) return {k, false};
  }
  return {need + 1, true};
}

void append_utf8(std::string& out, std::uint32_t cp) {
  if (cp < 0x80) {
    out += static_cast<char>(cp);
  } else if (cp < 0x800) {
    out += static_cast<char>(0xC0 | (cp >> 6));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    out += static_cast<char>(0xE0 | (cp >> 12));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  } else {
    out += static_cast<char>(0xF0 | (cp >> 18));
    out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
    out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
    out += static_cast<char>(0x80 | (cp & 0x3F));
  }
}

constexpr char hex_digits[] = "0123456789abcdef";

std::string hex_byte(unsigned char c) {
  return std::string("0x") + hex_digits[c >> 4] + hex_digits[c & 0xF];
}

// ---------------------------------------------------------------------------------------------
// JSON -> msgpack
// ---------------------------------------------------------------------------------------------

class json_parser {
public:
  json_parser(std::string_view in, std::size_t max_depth) : in_(in), max_depth_(max_depth) {}

  std::string run() {
    for (;;) {
      // A value starts at pos_.
      skip_ws();
      if (pos_ >= in_.size()) fail(pos_, "unexpected end of input, expected a value");
      const char c = in_[pos_];
      if (c == '[' || c == '{') {
        const bool is_map = c == '{';
        if (stack_.size() >= max_depth_) {
          fail(pos_, "nesting deeper than " + std::to_string(max_depth_) + " levels");
        }
        headers_.push_back({body_.size(), 0, is_map});
        stack_.push_back(headers_.size() - 1);
        ++pos_;
        skip_ws();
        if (pos_ < in_.size() && in_[pos_] == (is_map ? '}' : ']')) {
          ++pos_;
          stack_.pop_back();  // empty container: a complete value
        } else if (is_map) {
          parse_key();
          continue;
        } else {
          continue;
        }
      } else {
        parse_scalar();
      }

      // A value just ended: close containers / move to the next element.
      for (;;) {
        if (stack_.empty()) {
          skip_ws();
          if (pos_ != in_.size()) fail(pos_, "unexpected " + describe(pos_) + " after the value");
          return finish();
        }
        header& h = headers_[stack_.back()];
        if (++h.count > 0xFFFFFFFFu) fail(pos_, "too many elements in a container");
        skip_ws();
        const char close = h.is_map ? '}' : ']';
        if (pos_ < in_.size() && in_[pos_] == ',') {
          ++pos_;
          if (h.is_map) parse_key();
          break;
        }
        if (pos_ < in_.size() && in_[pos_] == close) {
          ++pos_;
          stack_.pop_back();
          continue;
        }
        fail(pos_, std::string("expected ',' or '") + close + "', found " + describe(pos_));
      }
    }
  }

private:
  struct header {
    std::size_t pos;      ///< Where in body_ the container's msgpack header belongs.
    std::uint64_t count;  ///< Elements (pairs for maps).
    bool is_map;
  };

  [[noreturn]] static void fail(std::size_t at, const std::string& reason) {
    throw json_error(at, reason);
  }

  std::string describe(std::size_t at) const {
    if (at >= in_.size()) return "end of input";
    const auto c = static_cast<unsigned char>(in_[at]);
    if (c >= 0x21 && c < 0x7F) return std::string("'") + static_cast<char>(c) + "'";
    return "byte " + hex_byte(c);
  }

  void skip_ws() noexcept {
    while (pos_ < in_.size()) {
      const char c = in_[pos_];
      if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
      ++pos_;
    }
  }

  void parse_key() {
    skip_ws();
    if (pos_ >= in_.size() || in_[pos_] != '"') {
      fail(pos_, "expected a string (object key), found " + describe(pos_));
    }
    parse_string();
    skip_ws();
    if (pos_ >= in_.size() || in_[pos_] != ':') {
      fail(pos_, "expected ':' after the object key, found " + describe(pos_));
    }
    ++pos_;
  }

  void parse_scalar() {
    const char c = in_[pos_];
    switch (c) {
      case '"': parse_string(); return;
      case 't': literal("true"); pk_.pack_true(); return;
      case 'f': literal("false"); pk_.pack_false(); return;
      case 'n': literal("null"); pk_.pack_nil(); return;
      default: break;
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      parse_number();
      return;
    }
    fail(pos_, "unexpected " + describe(pos_) + ", expected a value");
  }

  void literal(std::string_view word) {
    if (in_.substr(pos_, word.size()) != word) {
      fail(pos_, "invalid literal (expected '" + std::string(word) + "')");
    }
    pos_ += word.size();
  }

  static bool is_digit(char c) noexcept { return c >= '0' && c <= '9'; }

  bool digit_at(std::size_t i) const noexcept { return i < in_.size() && is_digit(in_[i]); }

  void parse_number() {
    const std::size_t start = pos_;
    const bool negative = in_[pos_] == '-';
    if (negative) ++pos_;
    if (!digit_at(pos_)) fail(pos_, "expected a digit, found " + describe(pos_));
    if (in_[pos_] == '0') {
      ++pos_;
      if (digit_at(pos_)) fail(pos_, "leading zeros are not allowed in numbers");
    } else {
      while (digit_at(pos_)) ++pos_;
    }
    bool integral = true;
    if (pos_ < in_.size() && in_[pos_] == '.') {
      integral = false;
      ++pos_;
      if (!digit_at(pos_)) fail(pos_, "expected a digit after '.', found " + describe(pos_));
      while (digit_at(pos_)) ++pos_;
    }
    if (pos_ < in_.size() && (in_[pos_] == 'e' || in_[pos_] == 'E')) {
      integral = false;
      ++pos_;
      if (pos_ < in_.size() && (in_[pos_] == '+' || in_[pos_] == '-')) ++pos_;
      if (!digit_at(pos_)) fail(pos_, "expected a digit in the exponent, found " + describe(pos_));
      while (digit_at(pos_)) ++pos_;
    }
    const char* first = in_.data() + start;
    const char* last = in_.data() + pos_;
    if (integral) {
      if (negative) {
        std::int64_t v = 0;
        const auto r = std::from_chars(first, last, v);
        if (r.ec == std::errc{} && r.ptr == last) {
          pk_.pack_int64(v);
          return;
        }
      } else {
        std::uint64_t v = 0;
        const auto r = std::from_chars(first, last, v);
        if (r.ec == std::errc{} && r.ptr == last) {
          pk_.pack_uint64(v);
          return;
        }
      }
      // Out of the int64/uint64 range: a float.
    }
    double d = 0;
    const auto r = std::from_chars(first, last, d);
    if (r.ec == std::errc{} && r.ptr == last) {
      append_float64(body_, d);
      return;
    }
    // Out of range: underflow rounds to (signed) zero or a subnormal, overflow is an error.
    // strtod tells them apart (and the grammar above is locale-independent).
    const std::string copy(first, last);
    errno = 0;
    d = std::strtod(copy.c_str(), nullptr);
    if (std::isinf(d)) fail(start, "number out of range for a 64-bit float");
    append_float64(body_, d);
  }

  int hex_value(std::size_t i) const noexcept {
    if (i >= in_.size()) return -1;
    const char c = in_[i];
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  }

  /// Reads the 4 hex digits of a \u escape whose backslash is at `at`.
  std::uint32_t read_u_escape(std::size_t at) const {
    std::uint32_t v = 0;
    for (std::size_t k = 0; k < 4; ++k) {
      const int h = hex_value(at + 2 + k);
      if (h < 0) fail(at, "invalid \\u escape (expected 4 hex digits)");
      v = (v << 4) | static_cast<std::uint32_t>(h);
    }
    return v;
  }

  /// Parses the string whose opening quote is at pos_ and packs it as msgpack str.
  void parse_string() {
    const std::size_t start = pos_;
    ++pos_;
    scratch_.clear();
    for (;;) {
      // Copy a run of plain ASCII at once.
      std::size_t run = pos_;
      while (run < in_.size()) {
        const auto c = static_cast<unsigned char>(in_[run]);
        if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) break;
        ++run;
      }
      scratch_.append(in_.data() + pos_, run - pos_);
      pos_ = run;
      if (pos_ >= in_.size()) {
        fail(pos_, "unexpected end of input in the string starting at byte " +
                       std::to_string(start));
      }
      const auto c = static_cast<unsigned char>(in_[pos_]);
      if (c == '"') {
        ++pos_;
        break;
      }
      if (c == '\\') {
        parse_escape();
        continue;
      }
      if (c < 0x20) {
        fail(pos_, "control character " + hex_byte(c) + " in a string (must be escaped)");
      }
      const utf8_step st = utf8_next(in_, pos_);
      if (!st.valid) fail(pos_, "invalid UTF-8 in a string");
      scratch_.append(in_.data() + pos_, st.length);
      pos_ += st.length;
    }
    if (scratch_.size() > 0xFFFFFFFFu) fail(start, "string too long");
    pk_.pack_str(static_cast<std::uint32_t>(scratch_.size()));
    pk_.pack_str_body(scratch_.data(), static_cast<std::uint32_t>(scratch_.size()));
  }

  void parse_escape() {
    const std::size_t at = pos_;
    if (at + 1 >= in_.size()) fail(at + 1, "unexpected end of input in an escape");
    const char e = in_[at + 1];
    switch (e) {
      case '"': scratch_ += '"'; break;
      case '\\': scratch_ += '\\'; break;
      case '/': scratch_ += '/'; break;
      case 'b': scratch_ += '\b'; break;
      case 'f': scratch_ += '\f'; break;
      case 'n': scratch_ += '\n'; break;
      case 'r': scratch_ += '\r'; break;
      case 't': scratch_ += '\t'; break;
      case 'u': {
        std::uint32_t cp = read_u_escape(at);
        pos_ = at + 6;
        if (cp >= 0xDC00 && cp <= 0xDFFF) {
          fail(at, "lone low surrogate in a \\u escape");
        }
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (pos_ + 1 >= in_.size() || in_[pos_] != '\\' || in_[pos_ + 1] != 'u') {
            fail(at, "high surrogate in a \\u escape not followed by a low surrogate");
          }
          const std::uint32_t low = read_u_escape(pos_);
          if (low < 0xDC00 || low > 0xDFFF) {
            fail(pos_, "high surrogate in a \\u escape not followed by a low surrogate");
          }
          cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          pos_ += 6;
        }
        append_utf8(scratch_, cp);
        return;
      }
      default:
        fail(at, "invalid escape '\\" + (static_cast<unsigned char>(e) >= 0x21 &&
                                                  static_cast<unsigned char>(e) < 0x7F
                                              ? std::string(1, e) + "'"
                                              : "' followed by byte " +
                                                    hex_byte(static_cast<unsigned char>(e))));
    }
    pos_ = at + 2;
  }

  /// Inserts the container headers (now that their sizes are known) into the body.
  std::string finish() const {
    std::string out;
    out.reserve(body_.size() + 5 * headers_.size());
    string_writer w{out};
    msgpack::packer<string_writer> pk(w);
    std::size_t last = 0;
    for (const header& h : headers_) {
      out.append(body_, last, h.pos - last);
      last = h.pos;
      const auto n = static_cast<std::uint32_t>(h.count);
      if (h.is_map) {
        pk.pack_map(n);
      } else {
        pk.pack_array(n);
      }
    }
    out.append(body_, last, std::string::npos);
    return out;
  }

  std::string_view in_;
  std::size_t max_depth_;
  std::size_t pos_ = 0;
  std::string body_;  ///< Everything but the container headers.
  string_writer writer_{body_};
  msgpack::packer<string_writer> pk_{writer_};
  std::vector<header> headers_;     ///< In opening order, so their positions never decrease.
  std::vector<std::size_t> stack_;  ///< Open containers (indexes into headers_).
  std::string scratch_;             ///< The string being decoded.
};

// ---------------------------------------------------------------------------------------------
// msgpack -> JSON
// ---------------------------------------------------------------------------------------------

constexpr std::int8_t ext_tuple = 1;
constexpr std::int8_t ext_set = 2;
constexpr std::int8_t ext_frozenset = 3;
constexpr std::int8_t ext_bigint = 4;

void append_double(std::string& out, double d) {
  if (std::isnan(d)) {
    out += "\"NaN\"";
    return;
  }
  if (std::isinf(d)) {
    out += d > 0 ? "\"Infinity\"" : "\"-Infinity\"";
    return;
  }
  char buf[64];
  const auto r = std::to_chars(buf, buf + sizeof buf, d);  // shortest round-trip
  const std::string_view s(buf, static_cast<std::size_t>(r.ptr - buf));
  out += s;
  if (s.find_first_of(".e") == std::string_view::npos) out += ".0";  // keep it a float
}

template <class Int>
void append_int(std::string& out, Int v) {
  char buf[32];
  const auto r = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, r.ptr);
}

class json_renderer {
public:
  explicit json_renderer(std::string& out) : out_(out) {}

  void run(const msgpack::object& root) {
    emit(root);
    while (!stack_.empty()) {
      frame& f = stack_.back();
      if (!f.is_map) {
        if (f.index == f.size) {
          out_ += ']';
          stack_.pop_back();
          continue;
        }
        if (f.index != 0) out_ += ',';
        const msgpack::object& item = f.items[f.index++];
        emit(item);  // may push: `f` is dangling from here on
        continue;
      }
      switch (f.state) {
        case key_state::before_key: {
          if (f.index == f.size) {
            out_ += '}';
            stack_.pop_back();
            break;
          }
          if (f.index != 0) out_ += ',';
          const msgpack::object& key = f.kv[f.index].key;
          if (key.type == msgpack::type::STR) {
            append_json_string(out_, std::string_view(key.via.str.ptr, key.via.str.size));
            out_ += ':';
            f.state = key_state::before_value;
          } else {
            // Render the key as JSON in place, then turn that text into a string.
            f.key_start = out_.size();
            f.state = key_state::key_pending;
            emit(key);
          }
          break;
        }
        case key_state::key_pending: {
          const std::string text = out_.substr(f.key_start);
          out_.resize(f.key_start);
          append_json_string(out_, text);
          out_ += ':';
          f.state = key_state::before_value;
          break;
        }
        case key_state::before_value: {
          f.state = key_state::before_key;
          const msgpack::object& val = f.kv[f.index++].val;
          emit(val);
          break;
        }
      }
    }
  }

private:
  enum class key_state : std::uint8_t { before_key, key_pending, before_value };

  struct frame {
    bool is_map = false;
    const msgpack::object* items = nullptr;
    const msgpack::object_kv* kv = nullptr;
    std::uint32_t size = 0;
    std::uint32_t index = 0;
    key_state state = key_state::before_key;
    std::size_t key_start = 0;
  };

  void open_array(const msgpack::object* items, std::uint32_t size) {
    out_ += '[';
    if (size == 0) {
      out_ += ']';
      return;
    }
    frame f;
    f.items = items;
    f.size = size;
    stack_.push_back(f);
  }

  /// Writes a scalar, or opens a container (pushing a frame).
  void emit(const msgpack::object& o) {
    switch (o.type) {
      case msgpack::type::NIL: out_ += "null"; return;
      case msgpack::type::BOOLEAN: out_ += o.via.boolean ? "true" : "false"; return;
      case msgpack::type::POSITIVE_INTEGER: append_int(out_, o.via.u64); return;
      case msgpack::type::NEGATIVE_INTEGER: append_int(out_, o.via.i64); return;
      case msgpack::type::FLOAT32:
      case msgpack::type::FLOAT64: append_double(out_, o.via.f64); return;
      case msgpack::type::STR:
        append_json_string(out_, std::string_view(o.via.str.ptr, o.via.str.size));
        return;
      case msgpack::type::BIN:
        out_ += "{\"$bytes\":\"";
        out_ += base64_encode(std::string_view(o.via.bin.ptr, o.via.bin.size));
        out_ += "\"}";
        return;
      case msgpack::type::ARRAY: open_array(o.via.array.ptr, o.via.array.size); return;
      case msgpack::type::MAP: {
        out_ += '{';
        if (o.via.map.size == 0) {
          out_ += '}';
          return;
        }
        frame f;
        f.is_map = true;
        f.kv = o.via.map.ptr;
        f.size = o.via.map.size;
        stack_.push_back(f);
        return;
      }
      case msgpack::type::EXT: emit_ext(o); return;
    }
    out_ += "null";  // unreachable for objects msgpack-cxx produces
  }

  void emit_ext(const msgpack::object& o) {
    const std::int8_t type = o.via.ext.type();
    const std::string_view data(o.via.ext.data(), o.via.ext.size);  // size excludes the type
    if (type == ext_tuple || type == ext_set || type == ext_frozenset) {
      msgpack::object arr;
      if (unpack_array(data, arr)) {
        open_array(arr.via.array.ptr, arr.via.array.size);
        return;
      }
    } else if (type == ext_bigint) {
      out_ += twos_complement_to_decimal(data);
      return;
    }
    out_ += "{\"$ext\":";
    append_int(out_, static_cast<int>(type));
    out_ += ",\"$data\":\"";
    out_ += base64_encode(data);
    out_ += "\"}";
  }

  /// Unpacks an ext payload that must be exactly one msgpack array (kept alive in zones_).
  bool unpack_array(std::string_view data, msgpack::object& out) {
    auto z = std::make_unique<msgpack::zone>();
    try {
      // Every element needs at least one byte: bound the counts by the payload size so a
      // bogus header cannot make msgpack-cxx allocate before it runs out of bytes.
      const std::size_t n = data.size();
      const msgpack::unpack_limit limit(n, n, n, n, n, n + 1);
      std::size_t off = 0;
      out = msgpack::unpack(*z, data.data(), n, off, nullptr, nullptr, limit);
      if (off != n || out.type != msgpack::type::ARRAY) return false;
      zones_.push_back(std::move(z));
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }

  std::string& out_;
  std::vector<frame> stack_;
  std::vector<std::unique_ptr<msgpack::zone>> zones_;  ///< Keeps unpacked ext payloads alive.
};

} // namespace

json_error::json_error(std::size_t offset, const std::string& reason)
    : std::runtime_error(reason + " at byte " + std::to_string(offset)),
      offset_(offset),
      reason_(reason) {}

std::string json_to_msgpack(std::string_view text, std::size_t max_depth) {
  return json_parser(text, max_depth).run();
}

void append_json(std::string& out, const msgpack::object& obj) {
  json_renderer(out).run(obj);
}

std::string to_json(const msgpack::object& obj) {
  std::string out;
  append_json(out, obj);
  return out;
}

void append_json_string(std::string& out, std::string_view s) {
  out += '"';
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c >= 0x80) {
      const utf8_step st = utf8_next(s, i);
      if (st.valid) {
        out.append(s.data() + i, st.length);
      } else {
        out += "\xEF\xBF\xBD";  // U+FFFD
      }
      i += st.length;
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      default:
        if (c < 0x20) {
          out += "\\u00";
          out += hex_digits[c >> 4];
          out += hex_digits[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  out += '"';
}

bool is_valid_utf8(std::string_view s) noexcept {
  std::size_t i = 0;
  while (i < s.size()) {
    if (static_cast<unsigned char>(s[i]) < 0x80) {
      ++i;
      continue;
    }
    const utf8_step st = utf8_next(s, i);
    if (!st.valid) return false;
    i += st.length;
  }
  return true;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  const auto at = [&](std::size_t k) { return static_cast<std::uint32_t>(
                                           static_cast<unsigned char>(bytes[k])); };
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 1) {
    const std::uint32_t v = at(i) << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += "==";
  } else if (rest == 2) {
    const std::uint32_t v = (at(i) << 16) | (at(i + 1) << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

std::string twos_complement_to_decimal(std::string_view bytes) {
  if (bytes.empty()) return "0";
  std::vector<unsigned char> mag(bytes.begin(), bytes.end());
  const bool negative = (mag[0] & 0x80) != 0;
  if (negative) {  // magnitude = ~x + 1 (fits: |-2^(8n-1)| = 2^(8n-1) as unsigned)
    for (auto& b : mag) b = static_cast<unsigned char>(~b);
    for (std::size_t k = mag.size(); k-- > 0;) {
      if (++mag[k] != 0) break;
    }
  }
  // Big-endian 32-bit limbs.
  const std::size_t pad = (4 - mag.size() % 4) % 4;
  std::vector<std::uint32_t> limbs((mag.size() + pad) / 4, 0);
  for (std::size_t k = 0; k < mag.size(); ++k) {
    const std::size_t bit_index = k + pad;  // position in the padded byte string
    limbs[bit_index / 4] |= static_cast<std::uint32_t>(mag[k]) << (8 * (3 - bit_index % 4));
  }
  // Repeated division by 10^9; the remainders are the base-10^9 digits, least significant first.
  constexpr std::uint32_t base = 1000000000;
  std::vector<std::uint32_t> chunks;
  std::size_t first = 0;
  while (first < limbs.size() && limbs[first] == 0) ++first;
  while (first < limbs.size()) {
    std::uint64_t rem = 0;
    for (std::size_t k = first; k < limbs.size(); ++k) {
      const std::uint64_t cur = (rem << 32) | limbs[k];
      limbs[k] = static_cast<std::uint32_t>(cur / base);
      rem = cur % base;
    }
    chunks.push_back(static_cast<std::uint32_t>(rem));
    while (first < limbs.size() && limbs[first] == 0) ++first;
  }
  if (chunks.empty()) return "0";
  std::string out = negative ? "-" : "";
  append_int(out, chunks.back());
  for (std::size_t k = chunks.size() - 1; k-- > 0;) {
    char buf[16];
    const auto r = std::to_chars(buf, buf + sizeof buf, chunks[k]);
    out.append(9 - static_cast<std::size_t>(r.ptr - buf), '0');
    out.append(buf, r.ptr);
  }
  return out;
}

} // namespace pyvisor::cli
