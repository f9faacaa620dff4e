#pragma once

// JSON <-> pyvisor values for the pyvisor program and the daemon's HTTP gateway, on top of nlohmann/json.
//
// - parse_json / document_to_msgpack: JSON text (strict RFC 8259, nlohmann's parser) -> a document
//   -> the msgpack bytes pyvisor sends to Python (--var values).
// - to_json_value / dump_json / to_json: a msgpack::object (as returned by pyvisor) -> a
//   document -> one line of JSON, with pyvisor's ext types (tuple, set, frozenset, bigint)
//   mapped to JSON. See cli/README.md.
//
// Documents are nlohmann::ordered_json: object keys keep their order (a Python dict's order).

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

#include <msgpack.hpp>
#include <nlohmann/json.hpp>

namespace pyvisor::gateway {

using json = nlohmann::ordered_json;

/// Deepest nesting of arrays/objects parse_json accepts by default.
inline constexpr std::size_t default_max_json_depth = 128;

/// Deepest nesting of containers to_json_value renders (values from Python nest at most 128
/// levels: the frame limit). Deeper values are refused with std::length_error.
inline constexpr std::size_t max_render_depth = 1000;

/// A JSON syntax error. `offset()` is the 0-based byte offset in the input where the problem
/// was found; `what()` is "<reason> at byte <offset>".
class json_error : public std::runtime_error {
public:
  json_error(std::size_t offset, const std::string& reason);

  std::size_t offset() const noexcept { return offset_; }
  const std::string& reason() const noexcept { return reason_; }

private:
  std::size_t offset_;
  std::string reason_;
};

/// Parses `text`: exactly one JSON value, optionally surrounded by whitespace (a leading UTF-8
/// byte order mark is skipped). Strict: no comments, trailing commas, NaN, leading zeros, raw
/// control characters, lone surrogates, invalid UTF-8, trailing data or numbers that overflow
/// a double. Duplicate object keys: the first position, the last value (like a Python dict).
/// Nesting deeper than `max_depth` arrays/objects is refused. Throws json_error.
json parse_json(std::string_view text, std::size_t max_depth = default_max_json_depth);

/// The msgpack encoding of a document: objects -> maps (str keys, in order), arrays -> arrays,
/// strings -> str, integers (nlohmann's int64/uint64) -> msgpack int of minimal width, other
/// numbers -> float 64 (1.0 stays a float), booleans -> bool, null -> nil.
std::string document_to_msgpack(const json& doc);

/// parse_json then document_to_msgpack.
std::string json_to_msgpack(std::string_view text, std::size_t max_depth = default_max_json_depth);

/// The document of a value from Python:
/// - nil -> null, bool, int -> number, float -> number (NaN/inf -> the strings "NaN",
///   "Infinity", "-Infinity"), str -> string, bin -> {"$bytes": "<base64>"},
/// - array -> array, map -> object (a key that is not a str becomes its own JSON text),
/// - ext 1 tuple, 2 set, 3 frozenset -> array; ext 4 bigint -> a number when it fits 64 bits,
///   otherwise a binary value (subtype 4) holding the decimal digits, which dump_json prints as
///   a number; other ext (and malformed tuple/set payloads) -> {"$ext": type, "$data": "<base64>"}.
/// Throws std::length_error for values nested deeper than max_render_depth.
json to_json_value(const msgpack::object& obj);

/// One line of compact JSON (no trailing newline). Invalid UTF-8 in strings becomes U+FFFD;
/// big integers (to_json_value's binary values of subtype 4) are printed as plain numbers.
std::string dump_json(const json& doc);

/// dump_json(to_json_value(obj)).
std::string to_json(const msgpack::object& obj);

/// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view s) noexcept;

/// Standard base64 (RFC 4648, with padding).
std::string base64_encode(std::string_view bytes);

/// The decimal digits of a two's complement, big-endian integer (any length; empty = 0),
/// e.g. {0xff} -> "-1", {0x01, 0x00} -> "256".
std::string twos_complement_to_decimal(std::string_view bytes);

} // namespace pyvisor::gateway
