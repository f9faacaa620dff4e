// msgpack (pyvisor values) -> nlohmann document -> one line of JSON, for the pyvisor program
// (json_value.hpp); base64 and big integers. The other direction is json_value.cpp.

#include <charconv>
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "json_value.hpp"

namespace pyvisor::gateway {

namespace {


constexpr std::int8_t ext_tuple = 1;
constexpr std::int8_t ext_set = 2;
constexpr std::int8_t ext_frozenset = 3;
constexpr std::int8_t ext_bigint = 4;

/// Unpacks an ext payload that must be exactly one msgpack array, into `zone`.
bool unpack_array(std::string_view data, msgpack::zone& zone, msgpack::object& out) {
  try {
    // Every element needs at least one byte: bound the counts by the payload size so a bogus
    // header cannot make msgpack-cxx allocate before it runs out of bytes.
    const std::size_t n = data.size();
    const msgpack::unpack_limit limit(n, n, n, n, n, n + 1);
    std::size_t off = 0;
    out = msgpack::unpack(zone, data.data(), n, off, nullptr, nullptr, limit);
    return off == n && out.type == msgpack::type::ARRAY;
  } catch (const std::exception&) {
    return false;
  }
}

json generic_ext(std::int8_t type, std::string_view data) {
  json j = json::object();
  j["$ext"] = static_cast<int>(type);
  j["$data"] = base64_encode(data);
  return j;
}

json bigint_value(std::string_view payload) {
  const std::string digits = twos_complement_to_decimal(payload);
  const char* first = digits.data();
  const char* last = first + digits.size();
  if (digits[0] == '-') {
    std::int64_t v = 0;
    if (const auto r = std::from_chars(first, last, v); r.ec == std::errc{} && r.ptr == last) {
      return v;
    }
  } else {
    std::uint64_t v = 0;
    if (const auto r = std::from_chars(first, last, v); r.ec == std::errc{} && r.ptr == last) {
      return v;
    }
  }
  return json::binary(json::binary_t::container_type(digits.begin(), digits.end()), ext_bigint);
}

json convert(const msgpack::object& o, std::size_t depth);

json convert_array(const msgpack::object* items, std::uint32_t size, std::size_t depth) {
  json arr = json::array();
  auto& elements = arr.get_ref<json::array_t&>();
  elements.reserve(size);
  for (std::uint32_t k = 0; k < size; ++k) elements.push_back(convert(items[k], depth + 1));
  return arr;
}

json convert(const msgpack::object& o, std::size_t depth) {
  const bool container = o.type == msgpack::type::ARRAY || o.type == msgpack::type::MAP ||
                         o.type == msgpack::type::EXT;
  if (container && depth >= max_render_depth) {
    throw std::length_error("value nested deeper than " + std::to_string(max_render_depth) +
                            " levels");
  }
  switch (o.type) {
    case msgpack::type::NIL: return nullptr;
    case msgpack::type::BOOLEAN: return o.via.boolean;
    case msgpack::type::POSITIVE_INTEGER: return o.via.u64;
    case msgpack::type::NEGATIVE_INTEGER: return o.via.i64;
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: {
      const double d = o.via.f64;
      if (std::isnan(d)) return "NaN";
      if (std::isinf(d)) return d > 0 ? "Infinity" : "-Infinity";
      return d;
    }
    case msgpack::type::STR: return std::string(o.via.str.ptr, o.via.str.size);
    case msgpack::type::BIN: {
      json j = json::object();
      j["$bytes"] = base64_encode(std::string_view(o.via.bin.ptr, o.via.bin.size));
      return j;
    }
    case msgpack::type::ARRAY: return convert_array(o.via.array.ptr, o.via.array.size, depth);
    case msgpack::type::MAP: {
      json obj = json::object();
      for (std::uint32_t k = 0; k < o.via.map.size; ++k) {
        const msgpack::object& key = o.via.map.ptr[k].key;
        std::string name = key.type == msgpack::type::STR
                               ? std::string(key.via.str.ptr, key.via.str.size)
                               : dump_json(convert(key, depth + 1));
        obj[std::move(name)] = convert(o.via.map.ptr[k].val, depth + 1);
      }
      return obj;
    }
    case msgpack::type::EXT: {
      const std::int8_t type = o.via.ext.type();
      const std::string_view data(o.via.ext.data(), o.via.ext.size);  // excludes the type
      if (type == ext_tuple || type == ext_set || type == ext_frozenset) {
        msgpack::zone zone;
        msgpack::object arr;
        if (unpack_array(data, zone, arr)) {
          return convert_array(arr.via.array.ptr, arr.via.array.size, depth);
        }
      } else if (type == ext_bigint) {
        return bigint_value(data);
      }
      return generic_ext(type, data);
    }
  }
  return nullptr;  // unreachable for objects msgpack-cxx produces
}

std::string dump_plain(const json& doc) {
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

bool has_binary(const json& j) {
  if (j.is_binary()) return true;
  if (!j.is_structured()) return false;
  for (const auto& item : j) {
    if (has_binary(item)) return true;
  }
  return false;
}

/// Replaces every binary value (a bigint's digits) by the string `marker` + its index, and
/// collects the digits.
void mark_binaries(json& j, const std::string& marker, std::vector<std::string>& digits) {
  if (j.is_binary()) {
    const auto& bytes = j.get_binary();
    digits.emplace_back(bytes.begin(), bytes.end());
    j = marker + std::to_string(digits.size() - 1) + "_";
    return;
  }
  if (!j.is_structured()) return;
  for (auto& item : j) mark_binaries(item, marker, digits);
}

} // namespace

json to_json_value(const msgpack::object& obj) { return convert(obj, 0); }

std::string dump_json(const json& doc) {
  std::string text = dump_plain(doc);
  if (!has_binary(doc)) return text;
  // JSON has numbers of any size but nlohmann's documents do not: big integers are binary
  // values. They are printed as strings with a marker that occurs nowhere else in the text,
  // and each marked string is then replaced by the digits. The marker starts with \u0001, so
  // its quoted form can only begin at a string's opening quote: every match is ours.
  std::string marker;
  for (int k = 0;; ++k) {
    marker = "\x01" "bigint" + std::to_string(k) + "_";
    const std::string printed = "\\u0001bigint" + std::to_string(k) + "_";
    if (text.find(printed) == std::string::npos) break;
  }
  json copy = doc;
  std::vector<std::string> digits;
  mark_binaries(copy, marker, digits);
  const std::string printed_marker = "\"\\u0001" + marker.substr(1);
  text = dump_plain(copy);
  std::string out;
  out.reserve(text.size());
  std::size_t pos = 0;
  for (;;) {
    const std::size_t hit = text.find(printed_marker, pos);
    if (hit == std::string::npos) break;
    out.append(text, pos, hit - pos);
    const std::size_t num = hit + printed_marker.size();
    const std::size_t end = text.find("_\"", num);
    std::size_t index = 0;
    std::from_chars(text.data() + num, text.data() + end, index);
    out += digits.at(index);
    pos = end + 2;
  }
  out.append(text, pos, std::string::npos);
  return out;
}

std::string to_json(const msgpack::object& obj) { return dump_json(to_json_value(obj)); }

std::string base64_encode(std::string_view bytes) {
  static constexpr char alphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  const auto at = [&](std::size_t k) {
    return static_cast<std::uint32_t>(static_cast<unsigned char>(bytes[k]));
  };
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    const std::uint32_t v = (at(i) << 16) | (at(i + 1) << 8) | at(i + 2);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    out += alphabet[v & 63];
  }
  const std::size_t rest = bytes.size() - i;
  if (rest == 0) return out;
  const std::uint32_t v = (at(i) << 16) | (rest == 2 ? at(i + 1) << 8 : 0);
  out += alphabet[(v >> 18) & 63];
  out += alphabet[(v >> 12) & 63];
  out += rest == 2 ? alphabet[(v >> 6) & 63] : '=';
  out += '=';
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
    const std::size_t index = k + pad;  // position in the padded byte string
    limbs[index / 4] |= static_cast<std::uint32_t>(mag[k]) << (8 * (3 - index % 4));
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
  out += std::to_string(chunks.back());
  for (std::size_t k = chunks.size() - 1; k-- > 0;) {
    const std::string part = std::to_string(chunks[k]);
    out.append(9 - part.size(), '0');
    out += part;
  }
  return out;
}

} // namespace pyvisor::gateway
