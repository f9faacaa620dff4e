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

/// Reads the header's exact shape, as the runner's parser does (python/pyvisor/_ndarray.py):
/// a fixarray of 3; a fixstr or str 8; two fixarrays or arrays 16 of at most 32 positive
/// fixints or uints up to 2^63 - 1. Nothing else (no ext: a reference there would be read).
class header_reader {
public:
  header_reader(const char* p, std::size_t n) : p_(reinterpret_cast<const unsigned char*>(p)), n_(n) {}

  std::optional<std::string> read(ndarray_header& h) {
    if (!byte(0x93))
      return "the header is not an array [dtype, shape, strides]";
    std::size_t len = 0;
    if (at_ < n_ && p_[at_] >= 0xa0 && p_[at_] <= 0xbf) {
      len = p_[at_++] & 0x1f;
    } else if (byte(0xd9)) {
      if (!number(1, len))
        return "the header is truncated";
    } else {
      return "the header's dtype is not a str";
    }
    if (n_ - at_ < len)
      return "the header is truncated";
    h.dtype.assign(reinterpret_cast<const char*>(p_ + at_), len);
    at_ += len;
    if (auto e = sizes(h.shape))
      return e;
    return sizes(h.strides);
  }
  std::size_t end() const noexcept { return at_; }

private:
  bool byte(unsigned char b) {
    if (at_ < n_ && p_[at_] == b) {
      ++at_;
      return true;
    }
    return false;
  }
  bool number(std::size_t width, std::size_t& out) {
    if (n_ - at_ < width)
      return false;
    std::uint64_t v = 0;
    for (std::size_t i = 0; i < width; ++i)
      v = (v << 8) | p_[at_ + i];
    at_ += width;
    out = static_cast<std::size_t>(v);
    return v <= static_cast<std::uint64_t>(INT64_MAX);  // numpy's intp
  }
  std::optional<std::string> sizes(std::vector<std::size_t>& out) {
    const std::string bad = "shape and strides are not two arrays of at most 32 ints in 0 .. 2^63 - 1";
    std::size_t count = 0;
    if (at_ < n_ && p_[at_] >= 0x90 && p_[at_] <= 0x9f) {
      count = p_[at_++] & 0x0f;
    } else if (byte(0xdc)) {
      if (!number(2, count))
        return bad;
    } else {
      return bad;
    }
    if (count > ndarray_max_dims)
      return bad;
    for (std::size_t i = 0; i < count; ++i) {
      if (at_ >= n_)
        return bad;
      unsigned char b = p_[at_];
      std::size_t v = 0;
      if (b <= 0x7f) {
        v = b;
        ++at_;
      } else if (b >= 0xcc && b <= 0xcf) {
        ++at_;
        if (!number(std::size_t{1} << (b - 0xcc), v))
          return bad;
      } else {
        return bad;
      }
      out.push_back(v);
    }
    return std::nullopt;
  }

  const unsigned char* p_;
  std::size_t n_;
  std::size_t at_ = 0;
};

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
  ndarray_parts out;
  header_reader reader{payload, n};
  if (auto why = reader.read(out.header))
    return bad(*why);
  std::size_t end = reader.end();
  std::size_t itemsize = itemsize_of(out.header.dtype);
  if (itemsize == 0)
    return bad("dtype \"" + out.header.dtype +
               "\" is not one of bool, int, uint, float or complex as numpy writes it");
  if (out.header.shape.size() != out.header.strides.size())
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

expected<ndarray_parts> ndarray_parts_of(const value& v) {
  const auto& o = v.object();
  if (o.type != msgpack::type::EXT || o.via.ext.type() != static_cast<std::int8_t>(ext_type::ndarray))
    return make_error(errc::type_mismatch, std::string{"not an ndarray: a "} + v.type_name());
  return parse_ndarray(o.via.ext.data(), o.via.ext.size);
}

} // namespace detail

expected<ndarray_header> ndarray_header_of(const value& v) {
  auto parts = detail::ndarray_parts_of(v);
  if (!parts)
    return parts.error();
  return std::move(parts->header);
}

} // namespace pyvisor
