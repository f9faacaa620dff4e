// msgpack (pyvisor values) -> nlohmann document -> one line of JSON, the lossless rendering of
// docs/json.md (json_value.hpp); base64 both ways and big integers' digits. The other
// direction is json_value.cpp.

#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <stdexcept>
#include <string>
#include <unordered_set>
#include <vector>

#include <openssl/evp.h>

#include "core/ext_payload.hpp"
#include "json_value.hpp"
#include "pyvisor/types.hpp"

namespace pyvisor::gateway {

namespace {

json tagged(const char* tag, json value) {
  json j = json::object();
  j[tag] = std::move(value);
  return j;
}

json generic_ext(std::int8_t type, std::string_view data) {
  json j = json::object();
  j["$ext"] = static_cast<int>(type);
  j["$data"] = base64_encode(data);
  return j;
}

/// An ext 4 payload: a number when it fits 64 bits, else {"$int": digits}.
json bigint_value(std::string_view payload) {
  const auto* p = reinterpret_cast<const std::uint8_t*>(payload.data());
  const auto b = pyvisor::bigint::from_twos_complement({p, p + payload.size()});
  if (const auto u = b.to_uint64()) return *u;
  if (const auto i = b.to_int64()) return *i;
  return tagged("$int", twos_complement_to_decimal(payload));
}

json float_value(double d) {
  if (std::isnan(d)) return tagged("$float", "nan");
  if (std::isinf(d)) return tagged("$float", d > 0 ? "inf" : "-inf");
  return d;
}

/// Whether a map renders as a JSON object: str keys, none beginning with "$", none twice.
bool plain_keys(const msgpack::object_map& m) {
  std::unordered_set<std::string_view> seen;
  for (std::uint32_t k = 0; k < m.size; ++k) {
    const msgpack::object& key = m.ptr[k].key;
    if (key.type != msgpack::type::STR) return false;
    const std::string_view name(key.via.str.ptr, key.via.str.size);
    if (name.starts_with('$') || !seen.insert(name).second) return false;
  }
  return true;
}

const char* container_tag(std::int8_t type) {
  switch (static_cast<ext_type>(type)) {
    case ext_type::tuple: return "$tuple";
    case ext_type::set: return "$set";
    default: return "$frozenset";
  }
}

json convert(const msgpack::object& o, std::size_t depth);

json convert_array(const msgpack::object* items, std::uint32_t size, std::size_t depth) {
  json arr = json::array();
  auto& elements = arr.get_ref<json::array_t&>();
  elements.reserve(size);
  for (std::uint32_t k = 0; k < size; ++k) elements.push_back(convert(items[k], depth + 1));
  return arr;
}

json convert_map(const msgpack::object_map& m, std::size_t depth) {
  if (plain_keys(m)) {
    json obj = json::object();
    // The keys are known to be distinct: append without ordered_map's linear search.
    auto& members = static_cast<json::object_t::Container&>(obj.get_ref<json::object_t&>());
    members.reserve(m.size);
    for (std::uint32_t k = 0; k < m.size; ++k) {
      const msgpack::object& key = m.ptr[k].key;
      members.emplace_back(std::string(key.via.str.ptr, key.via.str.size),
                           convert(m.ptr[k].val, depth + 1));
    }
    return obj;
  }
  json pairs = json::array();
  auto& items = pairs.get_ref<json::array_t&>();
  items.reserve(m.size);
  for (std::uint32_t k = 0; k < m.size; ++k) {
    json pair = json::array();
    pair.push_back(convert(m.ptr[k].key, depth + 1));
    pair.push_back(convert(m.ptr[k].val, depth + 1));
    items.push_back(std::move(pair));
  }
  return tagged("$map", std::move(pairs));
}

json convert_ext(const msgpack::object& o, std::size_t depth) {
  const std::int8_t type = o.via.ext.type();
  const std::string_view data(o.via.ext.data(), o.via.ext.size);  // excludes the type
  if (core::is_container_ext(o)) {
    // The library's one decoder of these payloads: by reference, under the frame limits
    // (nesting counted from this value's root). A payload it refuses stays a generic ext.
    msgpack::zone zone;
    msgpack::object arr;
    try {
      arr = core::decode_ext_payload(o, zone, core::limits{}, depth);
    } catch (const std::exception&) {
      return generic_ext(type, data);
    }
    return tagged(container_tag(type), convert_array(arr.via.array.ptr, arr.via.array.size, depth));
  }
  if (type == static_cast<std::int8_t>(ext_type::bigint) && !data.empty()) {
    return bigint_value(data);
  }
  return generic_ext(type, data);
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
    case msgpack::type::FLOAT64: return float_value(o.via.f64);
    case msgpack::type::STR: return std::string(o.via.str.ptr, o.via.str.size);
    case msgpack::type::BIN:
      return tagged("$bytes", base64_encode(std::string_view(o.via.bin.ptr, o.via.bin.size)));
    case msgpack::type::ARRAY: return convert_array(o.via.array.ptr, o.via.array.size, depth);
    case msgpack::type::MAP: return convert_map(o.via.map, depth);
    case msgpack::type::EXT: return convert_ext(o, depth);
  }
  return nullptr;  // unreachable for objects msgpack-cxx produces
}

} // namespace

json to_json_value(const msgpack::object& obj) { return convert(obj, 0); }

json to_json_value(const pyvisor::value& v) { return convert(v.object(), 0); }

std::string dump_json(const json& doc) {
  return doc.dump(-1, ' ', false, json::error_handler_t::replace);
}

std::string to_json(const msgpack::object& obj) { return dump_json(to_json_value(obj)); }

std::string to_json(const pyvisor::value& v) { return dump_json(to_json_value(v)); }

// base64 itself is OpenSSL's (EVP_EncodeBlock / EVP_DecodeBlock); what is checked here is only
// what makes the format strict (one spelling per byte string) and the errors precise.
std::string base64_encode(std::string_view bytes) {
  std::string out((bytes.size() + 2) / 3 * 4 + 1, '\0');
  const int n = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(bytes.data()),
                                static_cast<int>(bytes.size()));
  out.resize(static_cast<std::size_t>(n));
  return out;
}

std::optional<std::string> base64_decode(std::string_view text, std::string& why) {
  static constexpr std::string_view alphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  const auto unexpected = [&](std::size_t at) {
    const auto u = static_cast<unsigned char>(text[at]);
    static constexpr char hex[] = "0123456789abcdef";
    const std::string shown = (u >= 0x20 && u < 0x7F) ? "'" + std::string(1, text[at]) + "'"
                                                       : std::string("\\x") + hex[u >> 4] + hex[u & 0xF];
    why = "unexpected " + shown + " at offset " + std::to_string(at);
    return std::nullopt;
  };
  if (text.size() % 4 != 0) {
    why = "length " + std::to_string(text.size()) + " is not a multiple of 4";
    return std::nullopt;
  }
  // Padding: at most two '=', only at the very end.
  std::size_t pad = 0;
  while (pad < 2 && pad < text.size() && text[text.size() - 1 - pad] == '=')
    ++pad;
  const std::string_view body = text.substr(0, text.size() - pad);
  if (auto bad = body.find_first_not_of(alphabet); bad != std::string_view::npos)
    return unexpected(bad);
  std::string out(text.size() / 4 * 3, '\0');
  const int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                                reinterpret_cast<const unsigned char*>(text.data()),
                                static_cast<int>(text.size()));
  if (n < 0) {
    why = "not base64";
    return std::nullopt;
  }
  out.resize(static_cast<std::size_t>(n) - pad);  // EVP_DecodeBlock counts padding as zeros
  // One spelling per byte string: the unused bits of a short last group must be zero.
  if (base64_encode(out) != text) {
    why = "the unused bits of the last group are not zero";
    return std::nullopt;
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
