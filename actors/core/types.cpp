#include "pyvisor/types.hpp"

#include <algorithm>

#include "core/ext_payload.hpp"

namespace pyvisor {

namespace {

// Two's complement negation of a big-endian byte string, in place.
void negate(std::vector<std::uint8_t>& b) {
  unsigned carry = 1;
  for (auto i = b.size(); i-- > 0;) {
    unsigned v = static_cast<std::uint8_t>(~b[i]) + carry;
    b[i] = static_cast<std::uint8_t>(v);
    carry = v >> 8;
  }
}

} // namespace

bigint::bigint(std::int64_t v) {
  bytes_.resize(8);
  auto u = static_cast<std::uint64_t>(v);
  for (int i = 0; i < 8; ++i)
    bytes_[static_cast<std::size_t>(i)] = static_cast<std::uint8_t>(u >> (56 - 8 * i));
  normalize();
}

bigint::bigint(std::uint64_t v) {
  bytes_.resize(9);
  bytes_[0] = 0;
  for (int i = 0; i < 8; ++i)
    bytes_[static_cast<std::size_t>(i + 1)] = static_cast<std::uint8_t>(v >> (56 - 8 * i));
  normalize();
}

bigint bigint::from_twos_complement(std::vector<std::uint8_t> bytes) {
  bigint b;
  if (!bytes.empty())
    b.bytes_ = std::move(bytes);
  b.normalize();
  return b;
}

void bigint::normalize() {
  // Drop leading bytes that only repeat the sign.
  std::size_t i = 0;
  while (i + 1 < bytes_.size() &&
         ((bytes_[i] == 0x00 && !(bytes_[i + 1] & 0x80)) ||
          (bytes_[i] == 0xff && (bytes_[i + 1] & 0x80))))
    ++i;
  bytes_.erase(bytes_.begin(), bytes_.begin() + static_cast<std::ptrdiff_t>(i));
}

std::optional<bigint> bigint::from_string(std::string_view s) {
  bool neg = !s.empty() && s[0] == '-';
  if (neg || (!s.empty() && s[0] == '+'))
    s.remove_prefix(1);
  if (s.empty() || !std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return std::nullopt;
  // Magnitude, big-endian base 256, built by repeated multiply-add.
  std::vector<std::uint8_t> mag{0};
  for (char c : s) {
    unsigned carry = static_cast<unsigned>(c - '0');
    for (auto i = mag.size(); i-- > 0;) {
      unsigned v = mag[i] * 10u + carry;
      mag[i] = static_cast<std::uint8_t>(v);
      carry = v >> 8;
    }
    while (carry) {
      mag.insert(mag.begin(), static_cast<std::uint8_t>(carry));
      carry >>= 8;
    }
  }
  mag.insert(mag.begin(), 0);  // room for the sign bit
  if (neg)
    negate(mag);
  return from_twos_complement(std::move(mag));
}

std::string bigint::to_string() const {
  auto mag = bytes_;
  bool neg = negative();
  if (neg)
    negate(mag);
  std::string digits;
  // Repeated division by 10 of the magnitude.
  bool zero = false;
  while (!zero) {
    unsigned rem = 0;
    zero = true;
    for (auto& byte : mag) {
      unsigned cur = (rem << 8) | byte;
      byte = static_cast<std::uint8_t>(cur / 10);
      rem = cur % 10;
      if (byte)
        zero = false;
    }
    digits.push_back(static_cast<char>('0' + rem));
  }
  if (neg)
    digits.push_back('-');
  std::reverse(digits.begin(), digits.end());
  return digits;
}

std::optional<std::int64_t> bigint::to_int64() const {
  if (bytes_.size() > 8)
    return std::nullopt;
  std::uint64_t u = negative() ? ~std::uint64_t{0} : 0;
  for (auto b : bytes_)
    u = (u << 8) | b;
  return static_cast<std::int64_t>(u);
}

std::optional<std::uint64_t> bigint::to_uint64() const {
  if (negative() || bytes_.size() > 9 || (bytes_.size() == 9 && bytes_[0] != 0))
    return std::nullopt;
  std::uint64_t u = 0;
  for (auto b : bytes_)
    u = (u << 8) | b;
  return u;
}

namespace detail {

const msgpack::object& as_array(const msgpack::object& o, msgpack::zone& z, msgpack::object& tmp) {
  // An unexpanded tuple/set/frozenset (a raw msgpack::object, or a value whose expansion was
  // refused): decoded by the one limited decoder, by reference into o's payload.
  if (core::is_container_ext(o)) {
    tmp = core::decode_ext_payload(o, z);
    return tmp;
  }
  if (o.type != msgpack::type::ARRAY)
    throw msgpack::type_error();
  return o;
}

} // namespace detail
} // namespace pyvisor

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {

const msgpack::object& convert<pyvisor::bigint>::operator()(const msgpack::object& o,
                                                           pyvisor::bigint& v) const {
  switch (o.type) {
    case msgpack::type::POSITIVE_INTEGER: v = pyvisor::bigint{o.via.u64}; return o;
    case msgpack::type::NEGATIVE_INTEGER: v = pyvisor::bigint{o.via.i64}; return o;
    case msgpack::type::EXT:
      if (o.via.ext.type() == static_cast<std::int8_t>(pyvisor::ext_type::bigint) && o.via.ext.size > 0) {
        auto p = reinterpret_cast<const std::uint8_t*>(o.via.ext.data());
        v = pyvisor::bigint::from_twos_complement({p, p + o.via.ext.size});
        return o;
      }
      break;
    default: break;
  }
  throw msgpack::type_error();
}

const msgpack::object& convert<pyvisor::host_handle>::operator()(const msgpack::object& o,
                                                                pyvisor::host_handle& v) const {
  if (o.type != msgpack::type::EXT ||
      o.via.ext.type() != static_cast<std::int8_t>(pyvisor::ext_type::host_handle))
    throw msgpack::type_error();
  v.bytes.assign(o.via.ext.data(), o.via.ext.size);
  return o;
}

} // namespace adaptor
} // MSGPACK_API_VERSION_NAMESPACE
} // namespace msgpack
