// JSON text -> nlohmann document -> msgpack (pyvisor values), and UTF-8 validation, for the
// pyvisor program (json_value.hpp). The other direction is json_render.cpp.

#include "json_value.hpp"

#include <cstdint>
#include <cstring>
#include <iterator>
#include <vector>

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

/// Appends `d` as msgpack float 64 (0xcb). Not packer::pack_double: msgpack-cxx 4.x packs
/// doubles with an integral value (1.0, -0.0, 1e3) as msgpack ints.
void append_float64(std::string& out, double d) {
  std::uint64_t bits = 0;
  static_assert(sizeof bits == sizeof d);
  std::memcpy(&bits, &d, sizeof d);
  out += static_cast<char>(0xCB);
  for (int shift = 56; shift >= 0; shift -= 8) out += static_cast<char>((bits >> shift) & 0xFF);
}

/// msgpack-cxx stream that appends to a std::string.
struct string_writer {
  std::string& out;
  void write(const char* p, std::size_t n) { out.append(p, n); }
};

/// Packs a document (iteratively: documents may be as deep as the caller's max_depth).
void pack_document(std::string& out, const json& root) {
  string_writer w{out};
  msgpack::packer<string_writer> pk(w);
  // Containers whose elements are being packed: the container and the next element's index.
  struct frame {
    const json* node;
    json::const_iterator next;
  };
  std::vector<frame> stack;
  const auto emit = [&](const json& j) {
    switch (j.type()) {
      case json::value_t::null: pk.pack_nil(); return;
      case json::value_t::boolean: j.get<bool>() ? pk.pack_true() : pk.pack_false(); return;
      case json::value_t::number_integer: pk.pack_int64(j.get<std::int64_t>()); return;
      case json::value_t::number_unsigned: pk.pack_uint64(j.get<std::uint64_t>()); return;
      case json::value_t::number_float: append_float64(out, j.get<double>()); return;
      case json::value_t::string: {
        const auto& s = j.get_ref<const json::string_t&>();
        pk.pack_str(static_cast<std::uint32_t>(s.size()));
        pk.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
        return;
      }
      case json::value_t::array:
        pk.pack_array(static_cast<std::uint32_t>(j.size()));
        stack.push_back({&j, j.begin()});
        return;
      case json::value_t::object:
        pk.pack_map(static_cast<std::uint32_t>(j.size()));
        stack.push_back({&j, j.begin()});
        return;
      case json::value_t::binary:
      case json::value_t::discarded: pk.pack_nil(); return;  // never made by parse_json
    }
  };
  emit(root);
  while (!stack.empty()) {
    frame& f = stack.back();
    if (f.next == f.node->end()) {
      stack.pop_back();
      continue;
    }
    const auto it = f.next++;
    if (f.node->is_object()) {
      const std::string& key = it.key();
      pk.pack_str(static_cast<std::uint32_t>(key.size()));
      pk.pack_str_body(key.data(), static_cast<std::uint32_t>(key.size()));
    }
    emit(*it);  // may push: `f` is dangling from here on
  }
}

} // namespace

json_error::json_error(std::size_t offset, const std::string& reason)
    : std::runtime_error(reason + " at byte " + std::to_string(offset)),
      offset_(offset),
      reason_(reason) {}

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
  pack_document(out, doc);
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
