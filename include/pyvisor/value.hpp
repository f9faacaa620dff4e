#pragma once

#include <memory>
#include <string>

#include <msgpack.hpp>

#include "pyvisor/expected.hpp"

namespace pyvisor {

/// A value that came back from Python: a decoded msgpack object plus the memory it lives in.
/// Copies are cheap (they share the memory). Convert with msgpack-cxx's adaptors, either way:
/// - `v.to<T>()` -> `expected<T>`: never throws; a mismatch is errc::type_mismatch with the
///   reason. Use it for anything that came from Python.
/// - `v.as<T>()` -> `T`: the throwing convenience, for code that already knows the type;
///   throws msgpack-cxx's exceptions (msgpack::type_error, msgpack::unpack_error).
/// e.g. `to<int>()`, `to<std::vector<std::string>>()`, `to<std::map<std::string, double>>()`,
/// `to<std::optional<int>>()`, `to<std::tuple<int, std::string>>()`, ...
/// Python tuples, sets, frozensets and big ints arrive as msgpack ext types 1-4 (see the
/// README's type table). Tuple/set/frozenset payloads are expanded once, when the value is
/// made, by reference into the received bytes and under the frame limits (nesting 128 counted
/// from this value, 2^22 elements per container): memory stays O(payload). A payload that
/// breaks a limit is left unexpanded, and converting it reports the limit.
///
/// Lifetime: a T that holds `msgpack::object` (e.g. `std::map<std::string, msgpack::object>`)
/// holds views into this value's memory; keep the value (or a copy) alive while you use them.
/// Owning types (std::string, std::vector<int>, ...) copy and are independent.
class value {
public:
  /// nil (Python None).
  value();

  /// Wraps `obj`, which must stay valid as long as `owner` lives. When `obj` holds tuples or
  /// sets, their expanded form is built in `zone` (which `owner` must keep alive as well).
  value(std::shared_ptr<const void> owner, const msgpack::object& obj, msgpack::zone* zone = nullptr);

  /// The underlying msgpack object (valid while this value or a copy lives).
  const msgpack::object& object() const noexcept { return obj_; }

  /// Whether this is nil / None.
  bool is_nil() const noexcept { return obj_.type == msgpack::type::NIL; }

  /// The same value with Python tuples, sets and frozensets expanded to msgpack arrays (at any
  /// depth), which is what std containers convert from. Identical to object() when the value
  /// holds none of them.
  const msgpack::object& plain() const noexcept { return plain_; }

  /// The throwing convenience: converts with msgpack-cxx (from plain()) and throws what it
  /// throws on a mismatch (msgpack::type_error; msgpack::unpack_error naming the exceeded limit
  /// for a tuple/set payload refused by the limits). Prefer to<T>() for untrusted shapes.
  template <class T>
  T as() const {
    return plain_.as<T>();
  }

  /// Converts with msgpack-cxx without throwing: a mismatch (or a payload over the limits)
  /// gives errc::type_mismatch with the reason, e.g. "cannot convert tuple value: tuple
  /// payload: container of 268435456 elements exceeds the limit of 4194304".
  template <class T>
  expected<T> to() const noexcept {
    try {
      return plain_.as<T>();
    } catch (const std::exception& e) {
      return make_error(errc::type_mismatch, std::string("cannot convert ") + type_name() +
                                                 " value: " + e.what());
    }
  }

  /// The msgpack type of this value: "nil", "bool", "int", "float", "str", "bin", "array",
  /// "map", "tuple", "set", "frozenset", "bigint", "ndarray" (pyvisor/ndarray.hpp) or "ext".
  const char* type_name() const noexcept;

private:
  std::shared_ptr<const void> owner_;
  msgpack::object obj_;
  msgpack::object plain_;
};

/// The msgpack encoding of `v` (its object as received, tuples and sets as ext types).
std::string to_msgpack(const value& v);

/// A value from bytes holding exactly one msgpack value, checked with the frame limits
/// (nesting, element counts, declared lengths) before anything is allocated: malformed or
/// over-limit bytes are errc::invalid_argument naming the problem, and so are ext types 6 and 8
/// (shared-memory references: only the runtime makes those) anywhere, tuples and sets included.
expected<value> value_from_msgpack(std::string bytes);

} // namespace pyvisor
