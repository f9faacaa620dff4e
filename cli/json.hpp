#pragma once

// JSON <-> msgpack for the pyvisor command-line program.
//
// - json_to_msgpack: a strict RFC 8259 parser that writes msgpack bytes directly (no DOM).
// - to_json: renders a msgpack::object (as returned by pyvisor) as one line of JSON, with
//   pyvisor's ext types (tuple, set, frozenset, bigint) mapped to JSON. See cli/README.md.

#include <cstddef>
#include <stdexcept>
#include <string>
#include <string_view>

#include <msgpack.hpp>

namespace pyvisor::cli {

/// Deepest nesting of arrays/objects json_to_msgpack accepts by default.
inline constexpr std::size_t default_max_json_depth = 128;

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

/// Parses `text` (exactly one JSON value, optionally surrounded by whitespace) and returns its
/// msgpack encoding:
/// - objects -> maps (str keys, in input order; duplicate keys are kept as they are),
///   arrays -> arrays, strings -> str (escapes decoded, surrogate pairs combined into UTF-8),
/// - integers (no fraction, no exponent) in -2^63 .. 2^64-1 -> msgpack int (minimal width,
///   unsigned formats for non-negative values); every other number -> float 64,
/// - true/false -> bool, null -> nil.
/// Rejected (json_error): invalid UTF-8, raw control characters in strings, lone surrogates,
/// leading zeros, numbers that overflow float 64, trailing data, nesting deeper than
/// `max_depth`, ... The parser is iterative: deep input cannot overflow the C++ stack.
std::string json_to_msgpack(std::string_view text,
                            std::size_t max_depth = default_max_json_depth);

/// Renders `obj` as one line of JSON (no trailing newline). Never throws for any object
/// msgpack-cxx can produce (malformed ext payloads fall back to the generic ext form):
/// - nil -> null, bool, int -> number, float -> shortest round-trip number ("1.0" keeps a
///   ".0"; NaN/inf -> the strings "NaN", "Infinity", "-Infinity"),
/// - str -> string (invalid UTF-8 replaced with U+FFFD), bin -> {"$bytes": "<base64>"},
/// - array -> array, map -> object (non-str keys become their JSON text as a string),
/// - ext 1 tuple, 2 set, 3 frozenset -> array; ext 4 bigint -> decimal number,
///   other ext -> {"$ext": type, "$data": "<base64>"}.
/// Iterative as well.
std::string to_json(const msgpack::object& obj);

/// Appends the rendering of `obj` to `out`.
void append_json(std::string& out, const msgpack::object& obj);

/// Appends `s` as a JSON string literal (quoted, escaped; invalid UTF-8 -> U+FFFD).
void append_json_string(std::string& out, std::string_view s);

/// Whether `s` is well-formed UTF-8 (no overlongs, surrogates or code points above U+10FFFF).
bool is_valid_utf8(std::string_view s) noexcept;

/// Standard base64 (RFC 4648, with padding).
std::string base64_encode(std::string_view bytes);

/// The decimal digits of a two's complement, big-endian integer (any length; empty = 0),
/// e.g. {0xff} -> "-1", {0x01, 0x00} -> "256".
std::string twos_complement_to_decimal(std::string_view bytes);

} // namespace pyvisor::cli
