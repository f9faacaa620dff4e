// JSON text -> nlohmann document -> msgpack (pyvisor values, the tags of docs/json.md
// decoded), and UTF-8 validation (json_value.hpp). The other direction is json_render.cpp.

#include "json_value.hpp"

#include <algorithm>
#include <cstdint>
#include <iterator>
#include <limits>
#include <vector>

#include "pyvisor/msgpack_writer.hpp"
#include "pyvisor/types.hpp"

namespace pyvisor::gateway {

namespace {


/// A char iterator that records how far nlohmann's parser has read, so that errors the
/// parser callback raises (nesting) carry a byte offset.
class counting_iterator {
public:
  using iterator_category = std::forward_iterator_tag;
  using value_type = char;
  using difference_type = std::ptrdiff_t;
  using pointer = const char*;
  using reference = const char&;

  counting_iterator() = default;
  counting_iterator(const char* p, const char** furthest) : p_(p), furthest_(furthest) {}

  reference operator*() const { return *p_; }
  counting_iterator& operator++() {
    ++p_;
    if (furthest_ != nullptr && p_ > *furthest_) *furthest_ = p_;
    return *this;
  }
  counting_iterator operator++(int) {
    counting_iterator old = *this;
    ++*this;
    return old;
  }
  bool operator==(const counting_iterator& o) const { return p_ == o.p_; }
  bool operator!=(const counting_iterator& o) const { return p_ != o.p_; }

private:
  const char* p_ = nullptr;
  const char** furthest_ = nullptr;
};

/// nlohmann's what() without its "[json.exception.<kind>.<id>] parse error at line L,
/// column C: " prefix; bytes outside printable ASCII shown as \xHH.
std::string reason_of(const nlohmann::json::exception& e) {
  std::string_view w = e.what();
  if (const auto close = w.find("] "); w.starts_with("[json.exception.") && close != w.npos) {
    w.remove_prefix(close + 2);
  }
  if (w.starts_with("parse error")) {
    if (const auto colon = w.find(": "); colon != w.npos) w.remove_prefix(colon + 2);
  }
  std::string out;
  for (const char c : w) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7F) {
      out += c;
    } else {
      static constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[u >> 4];
      out += hex[u & 0xF];
    }
  }
  return out;
}

bool is_number_char(char c) {
  return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E';
}

// pyvisor's own stream: its packer writes every double as float 64 (msgpack_writer.hpp).
using packer = msgpack::packer<pyvisor::detail::msgpack_writer>;

const char* type_of(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned:
    case json::value_t::number_float: return "a number";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a binary value";
  }
}

/// `s` quoted for a message: at most 40 bytes of it.
std::string quoted(const std::string& s) {
  return s.size() <= 40 ? "\"" + s + "\"" : "\"" + s.substr(0, 37) + "...\"";
}

/// Packs a document. Iterative (documents may be as deep as the caller's max_depth): the
/// containers whose elements are being packed are frames on a stack. A tuple/set/frozenset's
/// payload is packed in place and its ext header inserted in front of it when it is complete.
class document_packer {
public:
  explicit document_packer(std::string& out) : out_(out), w_{&out}, pk_(w_) {}

  void pack(const json& root) {
    emit(root);
    while (!stack_.empty()) {
      frame& f = stack_.back();
      if (f.next == f.node->end()) {
        if (f.ext_type != 0) close_ext(f.ext_start, f.ext_type);
        stack_.pop_back();
        continue;
      }
      const auto it = f.next++;
      ++f.count;
      if (f.node->is_object()) pack_str(it.key());
      if (f.pairs) {  // a $map item: its key and value, without a header
        stack_.push_back({&*it, it->begin(), 0, nullptr, 0, 0, false});
        continue;
      }
      emit(*it);  // may push: `f` is dangling from here on
    }
  }

private:
  struct frame {
    const json* node;           ///< the array or object whose elements are packed
    json::const_iterator next;  ///< the next element
    std::size_t count;          ///< elements started so far (the current one is count - 1)
    const char* tag;            ///< the tag whose array this is ("$tuple", "$map"), or null
    std::size_t ext_start;      ///< ext: where its payload starts in out_
    std::int8_t ext_type;       ///< ext: its type, 0 for none
    bool pairs;                 ///< a $map's array: each element is a [key, value] pair
  };

  void pack_str(const std::string& s) {
    pk_.pack_str(static_cast<std::uint32_t>(s.size()));
    pk_.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
  }

  void emit(const json& j) {
    switch (j.type()) {
      case json::value_t::null: pk_.pack_nil(); return;
      case json::value_t::boolean: j.get<bool>() ? pk_.pack_true() : pk_.pack_false(); return;
      case json::value_t::number_integer: pk_.pack_int64(j.get<std::int64_t>()); return;
      case json::value_t::number_unsigned: pk_.pack_uint64(j.get<std::uint64_t>()); return;
      case json::value_t::number_float: pk_.pack_double(j.get<double>()); return;
      case json::value_t::string: pack_str(j.get_ref<const json::string_t&>()); return;
      case json::value_t::array:
        pk_.pack_array(static_cast<std::uint32_t>(j.size()));
        stack_.push_back({&j, j.begin(), 0, nullptr, 0, 0, false});
        return;
      case json::value_t::object:
        for (auto it = j.begin(); it != j.end(); ++it) {
          if (it.key().starts_with('$')) return emit_tagged(j, it.key());
        }
        pk_.pack_map(static_cast<std::uint32_t>(j.size()));
        stack_.push_back({&j, j.begin(), 0, nullptr, 0, 0, false});
        return;
      case json::value_t::binary:
      case json::value_t::discarded: fail("", "a binary value has no JSON form");
    }
  }

  /// An object with a "$" key: one of the tags, or an error.
  void emit_tagged(const json& j, const std::string& key) {
    static constexpr std::string_view hint =
        " (keys beginning with \"$\" are reserved for tags; a dict with such keys is written "
        "{\"$map\": [[key, value], ...]})";
    const bool ext = key == "$ext" || key == "$data";
    const std::size_t keys = ext ? 2 : 1;
    const bool known = ext || key == "$bytes" || key == "$int" || key == "$float" ||
                       key == "$tuple" || key == "$set" || key == "$frozenset" || key == "$map";
    if (!known) fail("", "unknown tag " + quoted(key) + std::string(hint));
    if (ext) {
      if (!j.contains("$ext")) fail("", "\"$data\" without \"$ext\"");
      if (!j.contains("$data")) fail("", "\"$ext\" without \"$data\"");
    }
    if (j.size() != keys) {
      for (auto it = j.begin(); it != j.end(); ++it) {
        if (it.key() != "$ext" && it.key() != "$data" && it.key() != key) {
          fail("", "tag " + quoted(key) + " with another key " + quoted(it.key()) +
                       " (a tagged object has only its tag" + (ext ? "s" : "") + ")");
        }
      }
    }
    if (ext) return emit_ext(j);
    const json& v = j.front();
    if (key == "$bytes") {
      const std::string bytes = decode_base64(key, v);
      pk_.pack_bin(static_cast<std::uint32_t>(bytes.size()));
      pk_.pack_bin_body(bytes.data(), static_cast<std::uint32_t>(bytes.size()));
    } else if (key == "$int") {
      emit_int(v);
    } else if (key == "$float") {
      const std::string* s = v.is_string() ? &v.get_ref<const std::string&>() : nullptr;
      if (s != nullptr && *s == "nan") {
        pk_.pack_double(std::numeric_limits<double>::quiet_NaN());
      } else if (s != nullptr && (*s == "inf" || *s == "-inf")) {
        const double inf = std::numeric_limits<double>::infinity();
        pk_.pack_double((*s)[0] == '-' ? -inf : inf);
      } else {
        fail(key, "expected \"nan\", \"inf\" or \"-inf\", got " +
                      (s != nullptr ? quoted(*s) : std::string(type_of(v))));
      }
    } else if (key == "$map") {
      if (!v.is_array()) {
        fail(key, "expected an array of [key, value] pairs, got " + std::string(type_of(v)));
      }
      for (std::size_t k = 0; k < v.size(); ++k) {
        if (!v[k].is_array() || v[k].size() != 2) {
          fail(key, "item " + std::to_string(k) + " is not a [key, value] pair");
        }
      }
      pk_.pack_map(static_cast<std::uint32_t>(v.size()));
      stack_.push_back({&v, v.begin(), 0, "$map", 0, 0, true});
    } else {  // $tuple, $set, $frozenset
      if (!v.is_array()) fail(key, "expected an array, got " + std::string(type_of(v)));
      const ext_type type = key == "$tuple" ? ext_type::tuple
                            : key == "$set" ? ext_type::set
                                            : ext_type::frozenset;
      const std::size_t start = out_.size();
      pk_.pack_array(static_cast<std::uint32_t>(v.size()));
      // The key lives in the document, as long as the frame.
      stack_.push_back(
          {&v, v.begin(), 0, key.c_str(), start, static_cast<std::int8_t>(type), false});
    }
  }

  void emit_int(const json& v) {
    if (!v.is_string()) {
      fail("$int", "expected a string of decimal digits, got " + std::string(type_of(v)));
    }
    const std::string& s = v.get_ref<const std::string&>();
    const bool negative = s.starts_with('-');
    const std::string_view digits = std::string_view(s).substr(negative ? 1 : 0);
    const bool canonical =
        !digits.empty() &&
        std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }) &&
        (digits[0] != '0' || (digits.size() == 1 && !negative));
    if (!canonical) {
      fail("$int", "expected decimal digits with an optional '-' and no leading zeros, got " +
                       quoted(s));
    }
    if (digits.size() > max_int_digits) {
      fail("$int", std::to_string(digits.size()) + " digits, more than the " +
                       std::to_string(max_int_digits) + " allowed");
    }
    pk_.pack(*pyvisor::bigint::from_string(s));  // an int when it fits 64 bits, else ext 4
  }

  void emit_ext(const json& j) {
    const json& type = j.at("$ext");
    // nlohmann reads non-negative integers as unsigned.
    const bool valid = type.is_number_unsigned()  ? type.get<std::uint64_t>() <= 127
                       : type.is_number_integer() ? type.get<std::int64_t>() >= -128
                                                  : false;
    if (!valid) {
      fail("$ext", "expected an integer type code in -128..127, got " +
                       (type.is_number() ? type.dump() : std::string(type_of(type))));
    }
    const std::string data = decode_base64("$data", j.at("$data"));
    pk_.pack_ext(data.size(), static_cast<std::int8_t>(type.get<std::int64_t>()));
    pk_.pack_ext_body(data.data(), static_cast<std::uint32_t>(data.size()));
  }

  std::string decode_base64(const std::string& key, const json& v) {
    if (!v.is_string()) fail(key, "expected a base64 string, got " + std::string(type_of(v)));
    std::string why;
    auto bytes = base64_decode(v.get_ref<const std::string&>(), why);
    if (!bytes) fail(key, "invalid base64: " + why);
    return std::move(*bytes);
  }

  /// Inserts the header of an ext of `type` whose payload runs from `start` to the end.
  void close_ext(std::size_t start, std::int8_t type) {
    std::string header;
    pyvisor::detail::msgpack_writer hw{&header};
    packer hp(hw);
    hp.pack_ext(out_.size() - start, type);
    out_.insert(start, header);
  }

  /// Throws json_error: `message` (prefixed by the tag `key` when given), and where.
  [[noreturn]] void fail(const std::string& key, const std::string& message) const {
    std::string where;
    for (const frame& f : stack_) {
      if (f.tag != nullptr) where += "/" + pointer_token(f.tag);
      if (f.count == 0) continue;
      if (f.node->is_object()) {
        where += "/" + pointer_token(std::prev(f.next).key());
      } else {
        where += "/" + std::to_string(f.count - 1);
      }
    }
    std::string text = key.empty() ? message : quoted(key) + ": " + message;
    if (!where.empty()) text += " (at " + where + ")";
    throw json_error(text);
  }

  /// A JSON Pointer (RFC 6901) reference token.
  static std::string pointer_token(std::string_view s) {
    std::string out;
    for (const char c : s) {
      if (c == '~') {
        out += "~0";
      } else if (c == '/') {
        out += "~1";
      } else {
        out += c;
      }
    }
    return out;
  }

  std::string& out_;
  pyvisor::detail::msgpack_writer w_;
  packer pk_;
  std::vector<frame> stack_;
};

} // namespace

json_error::json_error(std::size_t offset, const std::string& reason)
    : std::runtime_error(reason + " at byte " + std::to_string(offset)),
      offset_(offset),
      reason_(reason) {}

json_error::json_error(const std::string& reason)
    : std::runtime_error(reason), offset_(npos), reason_(reason) {}

json parse_json(std::string_view text, std::size_t max_depth) {
  const char* const begin = text.data();
  const char* furthest = begin;
  const counting_iterator first(begin, &furthest);
  const counting_iterator last(begin + text.size(), nullptr);
  const json::parser_callback_t depth_check = [&](int depth, json::parse_event_t event, json&) {
    if ((event == json::parse_event_t::object_start ||
         event == json::parse_event_t::array_start) &&
        static_cast<std::size_t>(depth) >= max_depth) {
      // The parser just read the opening bracket.
      const auto at = static_cast<std::size_t>(furthest - begin);
      throw json_error(at == 0 ? 0 : at - 1,
                       "nesting deeper than " + std::to_string(max_depth) + " levels");
    }
    return true;
  };
  try {
    return json::parse(first, last, depth_check, /*allow_exceptions=*/true,
                       /*ignore_comments=*/false);
  } catch (const json::parse_error& e) {
    // e.byte: 1-based index of the last character read (the one that was wrong).
    throw json_error(e.byte == 0 ? 0 : e.byte - 1, reason_of(e));
  } catch (const json::out_of_range& e) {
    // A number that overflows a double: point at its first byte. The parser has read the
    // number and, unless it ended the input, the byte after it.
    auto end = static_cast<std::size_t>(furthest - begin);
    if (end > 0 && end <= text.size() && !is_number_char(text[end - 1])) --end;
    std::size_t start = end;
    while (start > 0 && is_number_char(text[start - 1])) --start;
    throw json_error(start, reason_of(e));
  }
}

std::string document_to_msgpack(const json& doc) {
  std::string out;
  document_packer(out).pack(doc);
  return out;
}

std::string json_to_msgpack(std::string_view text, std::size_t max_depth) {
  return document_to_msgpack(parse_json(text, max_depth));
}

bool is_valid_utf8(std::string_view s) noexcept {
  try {
    (void)nlohmann::json(std::string(s)).dump();  // the strict handler throws on bad UTF-8
    return true;
  } catch (const std::exception&) {
    return false;
  }
}

} // namespace pyvisor::gateway
