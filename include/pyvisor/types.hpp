#pragma once

/// C++ types for the Python values msgpack has no type for, with msgpack-cxx adaptors:
///
/// | C++                         | wire          | Python            |
/// |-----------------------------|---------------|-------------------|
/// | `pyvisor::tuple<Ts...>`     | ext 1         | tuple             |
/// | `pyvisor::set<T>`           | ext 2         | set               |
/// | `pyvisor::frozenset<T>`     | ext 3         | frozenset         |
/// | `pyvisor::bigint`           | int or ext 4  | int of any size   |
/// | `pyvisor::host_handle`      | ext 5         | pyvisor.HostHandle (opaque, returns identical) |
/// | `pyvisor::ndarray_view<T>`  | ext 7         | numpy.ndarray (pyvisor/ndarray.hpp) |
///
/// Converting *from* a value, tuples, sets and frozensets also convert to std containers
/// (`std::vector`, `std::tuple`, `std::set`): pyvisor::value expands them for msgpack-cxx.
/// Every decode of an ext 1-3 payload (in value and in these adaptors) goes through the frame
/// limits and references the payload's bytes instead of copying them.

#include <cstdint>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "pyvisor/msgpack_writer.hpp"

namespace pyvisor {

/// Ext type numbers on the wire (docs/protocol.md).
enum class ext_type : std::int8_t {
  tuple = 1,
  set = 2,
  frozenset = 3,
  bigint = 4,
  host_handle = 5,
  ndarray = 7,  ///< a numpy array (pyvisor/ndarray.hpp)
};

/// A Python tuple: std::tuple on the C++ side, ext 1 on the wire.
template <class... Ts>
struct tuple {
  std::tuple<Ts...> items;
  tuple() = default;
  tuple(Ts... xs) : items(std::move(xs)...) {}
  template <std::size_t I>
  auto& get() noexcept { return std::get<I>(items); }
  template <std::size_t I>
  const auto& get() const noexcept { return std::get<I>(items); }
  friend bool operator==(const tuple&, const tuple&) = default;
};

/// A Python set of T (ext 2). Items keep the order given; Python does not.
template <class T>
struct set {
  std::vector<T> items;
  friend bool operator==(const set&, const set&) = default;
};

/// A Python frozenset of T (ext 3).
template <class T>
struct frozenset {
  std::vector<T> items;
  friend bool operator==(const frozenset&, const frozenset&) = default;
};

/// An integer of any size. Packs as a plain msgpack int when it fits (-2^63 .. 2^64-1),
/// else as ext 4 (two's complement, big-endian, minimal length).
class bigint {
public:
  bigint() : bytes_{0} {}
  bigint(std::int64_t v);
  bigint(std::uint64_t v);
  bigint(int v) : bigint(static_cast<std::int64_t>(v)) {}
  /// From decimal digits with an optional '-'; nullopt when malformed.
  static std::optional<bigint> from_string(std::string_view decimal);
  /// From two's complement big-endian bytes (any length >= 1).
  static bigint from_twos_complement(std::vector<std::uint8_t> bytes);

  /// Decimal digits, e.g. "-1606938044258990275541962092341162602522202993782792835301376".
  std::string to_string() const;
  /// Minimal two's complement, big-endian.
  const std::vector<std::uint8_t>& twos_complement() const noexcept { return bytes_; }
  bool negative() const noexcept { return (bytes_[0] & 0x80) != 0; }
  std::optional<std::int64_t> to_int64() const;
  std::optional<std::uint64_t> to_uint64() const;

  friend bool operator==(const bigint&, const bigint&) = default;

private:
  void normalize();
  std::vector<std::uint8_t> bytes_;
};

/// An opaque host value (ext 5). Python sees a pyvisor.HostHandle and gives back the same bytes.
struct host_handle {
  std::string bytes;
  friend bool operator==(const host_handle&, const host_handle&) = default;
};

namespace detail {

/// Packs `x` into a std::string with pyvisor's canonical float rule.
template <class T>
std::string pack_to_string(const T& x) {
  std::string out;
  msgpack_writer w{&out};
  msgpack::pack(w, x);
  return out;
}

/// Ext types 1-3 carry a msgpack array; the items' bytes are packed into the ext payload.
template <class Stream, class Items>
void pack_ext_array(msgpack::packer<Stream>& o, ext_type t, const Items& items) {
  auto payload = pack_to_string(items);
  o.pack_ext(payload.size(), static_cast<std::int8_t>(t));
  o.pack_ext_body(payload.data(), payload.size());
}

/// The array behind an ARRAY object, or behind an ext 1-3 object: its payload decoded once, by
/// reference, under the frame limits (max_depth 128, max_elements 2^22, the structure check
/// first), with the object tree in `z`. Throws msgpack::type_error for other objects and
/// msgpack::unpack_error naming the violated limit for a payload it refuses.
/// Items converted to msgpack::object from an unexpanded ext therefore point into `z` (arrays,
/// maps) while the adaptor runs only: convert through pyvisor::value (which expands into
/// memory it keeps) to hold such views.
const msgpack::object& as_array(const msgpack::object& o, msgpack::zone& z, msgpack::object& tmp);

} // namespace detail
} // namespace pyvisor

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {

template <class... Ts>
struct pack<pyvisor::tuple<Ts...>> {
  template <class Stream>
  packer<Stream>& operator()(packer<Stream>& o, const pyvisor::tuple<Ts...>& v) const {
    pyvisor::detail::pack_ext_array(o, pyvisor::ext_type::tuple, v.items);
    return o;
  }
};

template <class... Ts>
struct convert<pyvisor::tuple<Ts...>> {
  const msgpack::object& operator()(const msgpack::object& o, pyvisor::tuple<Ts...>& v) const {
    msgpack::zone z;
    msgpack::object tmp;
    pyvisor::detail::as_array(o, z, tmp).convert(v.items);
    return o;
  }
};

template <class T>
struct pack<pyvisor::set<T>> {
  template <class Stream>
  packer<Stream>& operator()(packer<Stream>& o, const pyvisor::set<T>& v) const {
    pyvisor::detail::pack_ext_array(o, pyvisor::ext_type::set, v.items);
    return o;
  }
};

template <class T>
struct convert<pyvisor::set<T>> {
  const msgpack::object& operator()(const msgpack::object& o, pyvisor::set<T>& v) const {
    msgpack::zone z;
    msgpack::object tmp;
    pyvisor::detail::as_array(o, z, tmp).convert(v.items);
    return o;
  }
};

template <class T>
struct pack<pyvisor::frozenset<T>> {
  template <class Stream>
  packer<Stream>& operator()(packer<Stream>& o, const pyvisor::frozenset<T>& v) const {
    pyvisor::detail::pack_ext_array(o, pyvisor::ext_type::frozenset, v.items);
    return o;
  }
};

template <class T>
struct convert<pyvisor::frozenset<T>> {
  const msgpack::object& operator()(const msgpack::object& o, pyvisor::frozenset<T>& v) const {
    msgpack::zone z;
    msgpack::object tmp;
    pyvisor::detail::as_array(o, z, tmp).convert(v.items);
    return o;
  }
};

template <>
struct pack<pyvisor::bigint> {
  template <class Stream>
  packer<Stream>& operator()(packer<Stream>& o, const pyvisor::bigint& v) const {
    if (auto u = v.to_uint64())
      return o.pack(*u);
    if (auto i = v.to_int64())
      return o.pack(*i);
    const auto& b = v.twos_complement();
    o.pack_ext(b.size(), static_cast<std::int8_t>(pyvisor::ext_type::bigint));
    o.pack_ext_body(reinterpret_cast<const char*>(b.data()), b.size());
    return o;
  }
};

template <>
struct convert<pyvisor::bigint> {
  const msgpack::object& operator()(const msgpack::object& o, pyvisor::bigint& v) const;
};

template <>
struct pack<pyvisor::host_handle> {
  template <class Stream>
  packer<Stream>& operator()(packer<Stream>& o, const pyvisor::host_handle& v) const {
    o.pack_ext(v.bytes.size(), static_cast<std::int8_t>(pyvisor::ext_type::host_handle));
    o.pack_ext_body(v.bytes.data(), v.bytes.size());
    return o;
  }
};

template <>
struct convert<pyvisor::host_handle> {
  const msgpack::object& operator()(const msgpack::object& o, pyvisor::host_handle& v) const;
};

} // namespace adaptor
} // MSGPACK_API_VERSION_NAMESPACE
} // namespace msgpack
