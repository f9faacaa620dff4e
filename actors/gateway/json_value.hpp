#pragma once

// JSON <-> pyvisor values for the pyvisor program and the daemon's HTTP gateway, on top of
// nlohmann/json. One lossless rendering in both directions, documented in docs/json.md:
//
// - to_json_value / dump_json / to_json: a msgpack::object (a value from Python) -> a
//   document -> one line of JSON. Python types JSON lacks become one-key tagged objects
//   ({"$tuple": [...]}, {"$bytes": "<base64>"}, {"$int": "<digits>"}, {"$map": [[k, v], ...]},
//   ...), so different Python values never give the same JSON.
// - parse_json / document_to_msgpack: JSON text (strict RFC 8259) -> a document -> the msgpack
//   bytes pyvisor sends to Python (--var values, the gateway's vars/args), the tags decoded
//   back to the same msgpack values.
//
// Documents are nlohmann::ordered_json: object keys keep their order (a Python dict's order).

#include <cstddef>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

#include "pyvisor/value.hpp"

namespace pyvisor::gateway {

using json = nlohmann::ordered_json;

/// Deepest nesting of arrays/objects parse_json accepts by default.
inline constexpr std::size_t default_max_json_depth = 128;

/// Deepest nesting of containers to_json_value renders (values from Python nest at most 128
/// levels: the frame limit). Deeper values are refused with std::length_error.
inline constexpr std::size_t max_render_depth = 1000;

/// Most digits a {"$int": "..."} may have (document_to_msgpack): the decimal conversion costs
/// time quadratic in the length. 2^66000 has 19869 digits.
inline constexpr std::size_t max_int_digits = 20000;

/// A JSON error: a syntax error of parse_json (with the byte offset where it was found), or a
/// document document_to_msgpack cannot encode (a malformed tag; no offset).
class json_error : public std::runtime_error {
public:
  /// A syntax error: what() is "<reason> at byte <offset>".
  json_error(std::size_t offset, const std::string& reason);
  /// A document error: what() is `reason`, which names where in the document (a JSON Pointer).
  explicit json_error(const std::string& reason);

  /// The 0-based byte offset in the input, or npos for a document error.
  std::size_t offset() const noexcept { return offset_; }
  bool has_offset() const noexcept { return offset_ != npos; }
  const std::string& reason() const noexcept { return reason_; }

  static constexpr std::size_t npos = static_cast<std::size_t>(-1);

private:
  std::size_t offset_;
  std::string reason_;
};

/// Parses `text`: exactly one JSON value, optionally surrounded by whitespace (a leading UTF-8
/// byte order mark is skipped). Strict: no comments, trailing commas, NaN, leading zeros, raw
/// control characters, lone surrogates, invalid UTF-8, trailing data or numbers that overflow
/// a double. Duplicate object keys: the first position, the last value (like a Python dict).
/// Nesting deeper than `max_depth` arrays/objects is refused. Throws json_error. Tags are not
/// looked at here (document_to_msgpack checks them).
json parse_json(std::string_view text, std::size_t max_depth = default_max_json_depth);

/// The msgpack encoding of a document: null -> nil, booleans -> bool, integers (nlohmann's
/// int64/uint64) -> msgpack int of minimal width, other numbers -> float 64 (1.0 stays a
/// float), strings -> str, arrays -> arrays, objects without "$" keys -> maps (str keys, in
/// order). The tagged objects of docs/json.md decode to what they render from:
/// {"$bytes": base64} -> bin; {"$tuple"|"$set"|"$frozenset": array} -> ext 1|2|3;
/// {"$int": "-?digits"} -> int (ext 4 beyond 64 bits); {"$float": "nan"|"inf"|"-inf"} ->
/// float 64; {"$map": [[key, value], ...]} -> map (keys of any type);
/// {"$ext": type, "$data": base64} -> ext `type`. Any other object with a key beginning with
/// "$", or a malformed tag, throws json_error naming the problem and where it is.
/// Iterative: documents may be as deep as the caller allowed.
std::string document_to_msgpack(const json& doc);

/// parse_json then document_to_msgpack.
std::string json_to_msgpack(std::string_view text, std::size_t max_depth = default_max_json_depth);

/// The document of a value from Python (docs/json.md): nil -> null, bool, int -> number,
/// finite float -> number (printed with a '.' or an exponent: 1.0 stays 1.0), NaN/inf/-inf ->
/// {"$float": "nan"|"inf"|"-inf"}, str -> string, bin -> {"$bytes": base64}, array -> array,
/// map -> object when every key is a str, none begins with "$" and none repeats, otherwise
/// {"$map": [[key, value], ...]}; ext 1/2/3 -> {"$tuple"|"$set"|"$frozenset": [...]}, ext 4
/// -> a number when it fits 64 bits, otherwise {"$int": "<decimal digits>"}; other exts (and
/// malformed tuple/set/bigint payloads) -> {"$ext": type, "$data": base64}.
/// Pass the object as received (pyvisor::value::object(), or the value overload), not
/// value::plain(), whose tuples and sets are already lists.
/// Throws std::length_error for values nested deeper than max_render_depth.
json to_json_value(const msgpack::object& obj);

/// to_json_value(v.object()).
json to_json_value(const pyvisor::value& v);

/// One line of compact JSON (no trailing newline). Invalid UTF-8 in strings becomes U+FFFD.
std::string dump_json(const json& doc);

/// dump_json(to_json_value(obj)).
std::string to_json(const msgpack::object& obj);
std::string to_json(const pyvisor::value& v);

/// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view s) noexcept;

/// Standard base64 (RFC 4648, with padding).
std::string base64_encode(std::string_view bytes);

/// Decodes standard, padded base64 (what base64_encode writes, and only that: no whitespace,
/// no URL alphabet, padding required, unused bits zero). nullopt when `text` is not such
/// base64, with the reason in `why`.
std::optional<std::string> base64_decode(std::string_view text, std::string& why);

/// The decimal digits of a two's complement, big-endian integer (any length; empty = 0),
/// e.g. {0xff} -> "-1", {0x01, 0x00} -> "256". Schoolbook division on base 10^9 limbs: about
/// 60 times faster than pyvisor::bigint::to_string for integers of thousands of digits.
std::string twos_complement_to_decimal(std::string_view bytes);

} // namespace pyvisor::gateway
