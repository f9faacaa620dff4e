#include "pyvisor/ndarray.hpp"

#include <algorithm>

#include "pyvisor/msgpack_writer.hpp"

namespace pyvisor {
namespace detail {
namespace {

/// Where the data starts in a payload whose header has `header` bytes: the first offset p at
/// or after it with p + 1 a multiple of 64 (the data is aligned wherever the type byte is).
std::size_t data_start(std::size_t header) {
  return (header + 1 + 63) / 64 * 64 - 1;
}

error bad(const std::string& why) {
  return make_error(errc::type_mismatch, "malformed ndarray (ext 7): " + why);
}

/// "<f8", "|b1", ">i4": byte order, kind b/i/u/f/c, item size numpy uses for that kind.
std::size_t itemsize_of(const std::string& dtype) {
  if (dtype.size() < 3 || (dtype[0] != '<' && dtype[0] != '>' && dtype[0] != '|'))
    return 0;
  std::size_t size = 0;
  for (std::size_t i = 2; i < dtype.size(); ++i) {
    if (dtype[i] < '0' || dtype[i] > '9' || size > 64)
      return 0;
    size = size * 10 + static_cast<std::size_t>(dtype[i] - '0');
  }
  std::string_view kind_sizes;
  switch (dtype[1]) {
    case 'b': kind_sizes = "1"; break;
    case 'i':
    case 'u': kind_sizes = "1248"; break;
    case 'f': kind_sizes = "248"; break;  // numpy's half, float, double (no long double)
    case 'c': kind_sizes = "8"; break;   // complex64; complex128 below
    default: return 0;
  }
  bool known = (dtype[1] == 'c' && size == 16) ||
               (size < 10 && kind_sizes.find(static_cast<char>('0' + size)) != std::string_view::npos);
  // numpy writes '|' exactly for one-byte items, and '<' / '>' for the others.
  if (!known || (size == 1) != (dtype[0] == '|'))
    return 0;
  return size;
}

bool read_sizes(const msgpack::object& o, std::vector<std::size_t>& out) {
  if (o.type != msgpack::type::ARRAY || o.via.array.size > ndarray_max_dims)
    return false;
  for (std::uint32_t i = 0; i < o.via.array.size; ++i) {
    const auto& x = o.via.array.ptr[i];
    // numpy's intp: nothing above 2^63 - 1
    if (x.type != msgpack::type::POSITIVE_INTEGER || x.via.u64 > static_cast<std::uint64_t>(INT64_MAX))
      return false;
    out.push_back(static_cast<std::size_t>(x.via.u64));
  }
  return true;
}

} // namespace

std::optional<std::size_t> ndarray_extent(const std::vector<std::size_t>& shape,
                                          const std::vector<std::size_t>& strides,
                                          std::size_t itemsize) {
  if (shape.size() != strides.size())
    return std::nullopt;
  if (std::find(shape.begin(), shape.end(), 0) != shape.end())
    return 0;
  std::size_t extent = itemsize;
  for (std::size_t i = 0; i < shape.size(); ++i) {
    std::size_t step = 0;
    if (__builtin_mul_overflow(shape[i] - 1, strides[i], &step) ||
        __builtin_add_overflow(extent, step, &extent))
      return std::nullopt;
  }
  return extent;
}

std::string ndarray_head(const std::string& dtype, const std::vector<std::size_t>& shape,
                         const std::vector<std::size_t>& strides) {
  std::string out;
  detail::msgpack_writer w{&out};
  msgpack::packer<detail::msgpack_writer> pk{w};
  pk.pack_array(3);
  pk.pack(dtype);
  pk.pack(shape);
  pk.pack(strides);
  out.resize(data_start(out.size()), '\0');
  return out;
}

expected<ndarray_parts> parse_ndarray(const char* payload, std::size_t n) {
  // The header is small: 3 + 2 * 32 ints at most 600 bytes or so.
  std::size_t window = std::min<std::size_t>(n, 4096);
  std::size_t end = 0;
  msgpack::object_handle h;
  try {
    h = msgpack::unpack(payload, window, end, nullptr, nullptr,
                        msgpack::unpack_limit(3 * ndarray_max_dims, 0, 64, 0, 0, 3));
  } catch (const std::exception& e) {
    return bad(std::string{"the header is not a msgpack array [dtype, shape, strides] ("} +
               e.what() + ")");
  }
  const auto& o = h.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 3 ||
      o.via.array.ptr[0].type != msgpack::type::STR)
    return bad("the header is not an array [dtype, shape, strides]");
  ndarray_parts out;
  out.header.dtype = o.via.array.ptr[0].as<std::string>();
  std::size_t itemsize = itemsize_of(out.header.dtype);
  if (itemsize == 0)
    return bad("dtype \"" + out.header.dtype +
               "\" is not one of bool, int, uint, float or complex as numpy writes it");
  if (!read_sizes(o.via.array.ptr[1], out.header.shape) ||
      !read_sizes(o.via.array.ptr[2], out.header.strides) ||
      out.header.shape.size() != out.header.strides.size())
    return bad("shape and strides are not two arrays of at most 32 ints in 0 .. 2^63 - 1 of the same "
               "length");
  std::size_t start = data_start(end);
  if (start > n || std::any_of(payload + end, payload + start, [](char c) { return c != 0; }))
    return bad("the padding after the header is not zero bytes up to offset " + std::to_string(start));
  auto extent = ndarray_extent(out.header.shape, out.header.strides, itemsize);
  if (!extent || *extent != n - start)
    return bad(std::to_string(n - start) + " bytes of data where the shape and strides reach " +
               (extent ? std::to_string(*extent) : std::string{"more than 2^64"}));
  std::size_t elements = 1;
  for (auto d : out.header.shape)
    if (__builtin_mul_overflow(elements, d, &elements))
      return bad("too many items");
  std::size_t bytes = 0;
  if (__builtin_mul_overflow(elements, itemsize, &bytes) || bytes > *extent)
    return bad("more items than bytes of data (overlapping strides)");
  out.data = payload + start;
  out.size = *extent;
  return out;
}

} // namespace detail

expected<ndarray_header> ndarray_header_of(const value& v) {
  const auto& o = v.object();
  if (o.type != msgpack::type::EXT || o.via.ext.type() != static_cast<std::int8_t>(ext_type::ndarray))
    return make_error(errc::type_mismatch, std::string{"not an ndarray: a "} + v.type_name());
  auto parts = detail::parse_ndarray(o.via.ext.data(), o.via.ext.size);
  if (!parts)
    return parts.error();
  return std::move(parts->header);
}

} // namespace pyvisor
