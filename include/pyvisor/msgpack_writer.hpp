#pragma once

#include <cstdint>
#include <cstring>
#include <string>

#include <msgpack.hpp>

namespace pyvisor::detail {

/// From this size on a buffer is worth transparent huge pages: filling a fresh 64 MiB buffer
/// costs ~16 000 page faults with 4 KiB pages, ~32 with 2 MiB ones (about 2x faster here).
inline constexpr std::size_t large_bytes = std::size_t{4} << 20;

/// Reserves `more` bytes at the end of `s`, on transparent huge pages where possible.
void reserve_large(std::string& s, std::size_t more);

/// The stream every pyvisor encoder packs into: appends to a std::string.
struct msgpack_writer {
  std::string* out;
  void write(const char* p, std::size_t n) {
    if (n >= large_bytes && out->capacity() - out->size() < n)
      reserve_large(*out, n);  // a large bytes/str argument: copied into huge pages
    out->append(p, n);
  }
};

} // namespace pyvisor::detail

// msgpack-cxx 4.1.3 packs a double with a whole-number value as an integer (and -0.0 as 0),
// so 2.0 would arrive in Python as the int 2. pyvisor's wire format says floats are always
// float 64 (docs/protocol.md), so its own stream type gets a pack_double/pack_float that does
// exactly that. Everything pyvisor encodes goes through msgpack_writer.
template <>
inline msgpack::v1::packer<pyvisor::detail::msgpack_writer>&
msgpack::v1::packer<pyvisor::detail::msgpack_writer>::pack_double(double d) {
  std::uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  char buf[9];
  buf[0] = static_cast<char>(0xcbu);
  for (int i = 0; i < 8; ++i)
    buf[1 + i] = static_cast<char>(bits >> (56 - 8 * i));
  append_buffer(buf, 9);
  return *this;
}

template <>
inline msgpack::v1::packer<pyvisor::detail::msgpack_writer>&
msgpack::v1::packer<pyvisor::detail::msgpack_writer>::pack_float(float f) {
  return pack_double(static_cast<double>(f));
}
