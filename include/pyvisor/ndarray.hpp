#pragma once

/// numpy arrays (msgpack ext 7; docs/protocol.md, "ndarray").
///
/// An `ndarray` that Python returns arrives as a value of type "ndarray"; `ndarray_view<T>`
/// reads it in place, typed and without a copy:
///
///     auto v = interp.eval("return np.linspace(0, 1, 5)").value();
///     auto a = pyvisor::ndarray_view<double>::from(v).value();   // a(3) == 0.75
///
/// and one goes the other way as an argument: a view of memory it does not own is copied when
/// the `arg` is made; one that owns its items (`take`) or came from a value is not (its bytes
/// are copied once, when the request is written, into shared memory or the pipe):
///
///     std::vector<double> xs(1 << 20, 1.0);
///     interp.eval("return float(a.sum())", {{"a", pyvisor::ndarray_view<double>(xs.data(), {1024, 1024})}});
///     auto owned = pyvisor::ndarray_view<double>::take(std::move(xs), {1024, 1024}).value();
///     interp.eval("return float(a.sum())", {{"a", owned}});
///
/// Python gets a new, writable, C-contiguous `numpy.ndarray`. Arrays of bool, signed and
/// unsigned integers, floats and complex numbers travel; their bytes take the shared-memory
/// path above `shared_memory_threshold`, where a result stays in the pages Python wrote it to
/// (64-byte aligned). Without numpy in the interpreter, a request with an array fails with
/// invalid_argument, and Python never sends one.

#include <bit>
#include <complex>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include <msgpack.hpp>

#include "pyvisor/expected.hpp"
#include "pyvisor/types.hpp"
#include "pyvisor/value.hpp"
#include "pyvisor/vars.hpp"

namespace pyvisor {

/// An array's header: numpy's dtype string ("<f8", "|b1", ">i4", ...), its shape, and its
/// strides in bytes (all non-negative).
struct ndarray_header {
  std::string dtype;
  std::vector<std::size_t> shape;
  std::vector<std::size_t> strides;
};

/// The header of the ndarray in `v`; errc::type_mismatch when `v` is not one (or is malformed).
expected<ndarray_header> ndarray_header_of(const value& v);

namespace detail {

/// At most this many dimensions (as numpy).
inline constexpr std::size_t ndarray_max_dims = 32;

/// The checked parts of an ext 7 payload.
struct ndarray_parts {
  ndarray_header header;
  const char* data = nullptr;  ///< the bytes the strides reach
  std::size_t size = 0;        ///< how many
};

/// Parses and checks an ext 7 payload: header, zero padding, data of exactly the extent the
/// shape and strides reach, no more elements than bytes (no overlapping strides). The error
/// says what is wrong.
expected<ndarray_parts> parse_ndarray(const char* payload, std::size_t n);

/// parse_ndarray of the ext 7 in `v`; type_mismatch when `v` is not one.
expected<ndarray_parts> ndarray_parts_of(const value& v);

/// The payload's header and padding (the data follows) for `dtype`, `shape` and `strides`.
std::string ndarray_head(const std::string& dtype, const std::vector<std::size_t>& shape,
                         const std::vector<std::size_t>& strides);

/// The bytes that `shape` and `strides` reach with items of `itemsize` (0 when empty);
/// nullopt on overflow.
std::optional<std::size_t> ndarray_extent(const std::vector<std::size_t>& shape,
                                          const std::vector<std::size_t>& strides,
                                          std::size_t itemsize);

template <class T>
struct dtype_traits {
  static constexpr bool supported = false;
};

template <class T>
constexpr char integer_kind() {
  return std::is_same_v<T, bool> ? 'b' : std::is_signed_v<T> ? 'i' : 'u';
}

} // namespace detail

/// numpy's dtype string for T on this machine, e.g. "<f8" for double, "|u1" for
/// std::uint8_t, "|b1" for bool, "<c16" for std::complex<double>. T is bool, an integer type
/// (not char), float, double, std::complex<float> or std::complex<double>.
template <class T>
std::string dtype_of() {
  char order = sizeof(T) == 1 ? '|' : std::endian::native == std::endian::little ? '<' : '>';
  char kind;
  std::size_t size = sizeof(T);
  if constexpr (std::is_same_v<T, std::complex<float>> || std::is_same_v<T, std::complex<double>>) {
    kind = 'c';
  } else {
    static_assert(std::is_arithmetic_v<T> && !std::is_same_v<T, char> && !std::is_same_v<T, long double>,
                  "ndarray items are bool, integers, float, double or std::complex of those");
    kind = std::is_floating_point_v<T> ? 'f' : detail::integer_kind<T>();
  }
  return std::string{order} + kind + std::to_string(size);
}

/// A typed, read-only view of an n-dimensional array: of an ndarray Python returned
/// (`from`), which it keeps alive, or of your memory (the constructor), to send.
template <class T>
class ndarray_view {
public:
  /// An empty array (shape {0}).
  ndarray_view() = default;

  /// A view of `data` with `shape`; `strides` in bytes, C order when empty. The memory must
  /// live while the view is used; an `arg` made from the view copies the bytes.
  ndarray_view(const T* data, std::vector<std::size_t> shape, std::vector<std::size_t> strides = {})
    : data_(data), shape_(std::move(shape)), strides_(std::move(strides)) {
    if (strides_.empty())
      strides_ = c_strides(shape_);
  }

  /// The same, with `owner` keeping the memory alive (and unchanged) for as long as the view,
  /// or an `arg` made from it, lives: such an `arg` holds the bytes without copying them.
  ndarray_view(std::shared_ptr<const void> owner, const T* data, std::vector<std::size_t> shape,
               std::vector<std::size_t> strides = {})
    : ndarray_view(data, std::move(shape), std::move(strides)) {
    owner_ = std::move(owner);
  }

  /// A view that owns `items` (moved in, not copied), C order in `shape`; invalid_argument
  /// when the shape does not hold exactly items.size() items.
  static expected<ndarray_view> take(std::vector<T>&& items, std::vector<std::size_t> shape) {
    std::size_t n = 1;
    for (auto d : shape)
      if (__builtin_mul_overflow(n, d, &n))
        return make_error(errc::invalid_argument, "ndarray_view::take: the shape overflows");
    if (n != items.size())
      return make_error(errc::invalid_argument, "ndarray_view::take: a shape of " + std::to_string(n) +
                                                    " items for " + std::to_string(items.size()));
    auto owned = std::make_shared<const std::vector<T>>(std::move(items));
    const T* data = owned->data();
    return ndarray_view(std::move(owned), data, std::move(shape));
  }

  /// The array in `v` as T, without a copy when its data is aligned for T (always through
  /// shared memory; not always inline, where it is then copied once). errc::type_mismatch
  /// when `v` is not an ndarray or its dtype is not dtype_of<T>() (the message names both).
  static expected<ndarray_view> from(const value& v) {
    auto parts = detail::ndarray_parts_of(v);
    if (!parts)
      return parts.error();
    if (parts->header.dtype != dtype_of<T>())
      return make_error(errc::type_mismatch, "an ndarray of dtype " + parts->header.dtype +
                                                 ", not " + dtype_of<T>());
    for (auto stride : parts->header.strides)
      if (stride % alignof(T) != 0)  // items would be misaligned (numpy never sends these)
        return make_error(errc::type_mismatch, "an ndarray with a stride of " + std::to_string(stride) +
                                                   " bytes, not a multiple of " +
                                                   std::to_string(alignof(T)));
    if constexpr (std::is_same_v<T, bool>) {
      for (std::size_t i = 0; i < parts->size; ++i)
        if (static_cast<unsigned char>(parts->data[i]) > 1)
          return make_error(errc::type_mismatch, "a bool ndarray with a byte that is neither 0 nor 1");
    }
    ndarray_view out;
    out.shape_ = std::move(parts->header.shape);
    out.strides_ = std::move(parts->header.strides);
    if (reinterpret_cast<std::uintptr_t>(parts->data) % alignof(T) == 0) {
      out.data_ = reinterpret_cast<const T*>(parts->data);
      out.owner_ = std::make_shared<const value>(v);  // the value's memory
    } else {
      std::shared_ptr<T[]> copy{new T[parts->size / sizeof(T) + 1]};
      std::memcpy(copy.get(), parts->data, parts->size);
      out.data_ = copy.get();
      out.owner_ = std::move(copy);
    }
    return out;
  }

  /// The first item (the array's start; nullptr for a default view).
  const T* data() const noexcept { return data_; }
  const std::vector<std::size_t>& shape() const noexcept { return shape_; }
  /// Bytes between items along each dimension.
  const std::vector<std::size_t>& strides() const noexcept { return strides_; }
  std::size_t ndim() const noexcept { return shape_.size(); }
  /// The number of items.
  std::size_t size() const noexcept {
    std::size_t n = 1;
    for (auto d : shape_)
      n *= d;
    return n;
  }
  /// Whether the items are in C order, back to back.
  bool contiguous() const noexcept { return strides_ == c_strides(shape_) || size() == 0; }
  /// The items in C order when contiguous(); empty otherwise.
  std::span<const T> span() const noexcept {
    return contiguous() ? std::span<const T>{data_, size()} : std::span<const T>{};
  }
  /// The item at these indices (one per dimension; not checked).
  template <class... I>
  const T& operator()(I... index) const noexcept {
    static_assert((std::is_integral_v<I> && ...), "indices are integers");
    std::size_t at = 0, d = 0;
    ((at += static_cast<std::size_t>(index) * strides_[d++]), ...);
    return *reinterpret_cast<const T*>(reinterpret_cast<const char*>(data_) + at);
  }
  /// numpy's dtype string of the items.
  static std::string dtype() { return dtype_of<T>(); }
  /// What keeps the memory alive (nullptr for a view of memory it does not own).
  const std::shared_ptr<const void>& owner() const noexcept { return owner_; }

private:
  static std::vector<std::size_t> c_strides(const std::vector<std::size_t>& shape) {
    std::vector<std::size_t> s(shape.size());
    std::size_t step = sizeof(T);
    for (std::size_t i = shape.size(); i-- > 0;) {
      s[i] = step;
      step *= shape[i];
    }
    return s;
  }

  const T* data_ = nullptr;
  std::vector<std::size_t> shape_{0};    // default: empty
  std::vector<std::size_t> strides_{0};
  std::shared_ptr<const void> owner_;  // the value read from, an aligned copy, or the caller's
};

namespace detail {

/// The start of `v`'s ext 7 payload (its header and padding) and how many bytes of data follow
/// it; msgpack::type_error when `v` cannot be an ext 7 (ext 32 holds < 4 GiB; no data).
template <class T>
std::pair<std::string, std::size_t> ndarray_payload_start(const ndarray_view<T>& v) {
  auto extent = ndarray_extent(v.shape(), v.strides(), sizeof(T));
  if (!extent || v.ndim() > ndarray_max_dims || *extent > 0xffff0000u ||
      (v.data() == nullptr && *extent != 0))
    throw msgpack::type_error();
  std::vector<std::size_t> strides = v.strides();
  if (*extent == 0)
    strides.assign(strides.size(), 0);  // canonical: an empty array has no steps
  return {ndarray_head(dtype_of<T>(), v.shape(), strides), *extent};
}

} // namespace detail

template <class T>
arg::arg(const ndarray_view<T>& v) {
  if (!v.owner()) {  // memory the view does not keep: the encoding is a copy
    detail::msgpack_writer w{&bytes_};
    msgpack::pack(w, v);
    share_if_large();
    return;
  }
  auto [body, extent] = detail::ndarray_payload_start(v);
  std::string head;
  detail::msgpack_writer w{&head};
  msgpack::packer<detail::msgpack_writer> pk{w};
  pk.pack_ext(static_cast<std::uint32_t>(body.size() + extent), static_cast<std::int8_t>(ext_type::ndarray));
  *this = from_parts(std::move(head), std::move(body), v.owner(),
                     reinterpret_cast<const char*>(v.data()), extent);
}

} // namespace pyvisor

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {

/// An ndarray_view packs as an ext 7 (header, padding, then the bytes its strides reach).
template <class T>
struct pack<pyvisor::ndarray_view<T>> {
  template <class Stream>
  packer<Stream>& operator()(packer<Stream>& o, const pyvisor::ndarray_view<T>& v) const {
    auto [head, extent] = pyvisor::detail::ndarray_payload_start(v);
    o.pack_ext(static_cast<std::uint32_t>(head.size() + extent),
               static_cast<std::int8_t>(pyvisor::ext_type::ndarray));
    o.pack_ext_body(head.data(), static_cast<std::uint32_t>(head.size()));
    if (extent != 0)
      o.pack_ext_body(reinterpret_cast<const char*>(v.data()), static_cast<std::uint32_t>(extent));
    return o;
  }
};

} // namespace adaptor
} // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
} // namespace msgpack
