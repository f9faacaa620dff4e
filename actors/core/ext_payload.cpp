#include "core/ext_payload.hpp"

#include <algorithm>
#include <string>

#include "core/structure_check.hpp"

namespace pyvisor::core {

namespace {

// Every str, bin and ext body stays where it is: the payload's memory is owned by the caller
// (a value's owner, or the object being converted), so copying would only multiply memory.
bool reference_everything(msgpack::type::object_type, std::size_t, void*) {
  return true;
}

const char* ext_name(std::int8_t type) noexcept {
  switch (type) {
    case 1: return "tuple";
    case 2: return "set";
    default: return "frozenset";
  }
}

[[noreturn]] void fail(std::int8_t type, const std::string& why) {
  throw msgpack::unpack_error(std::string(ext_name(type)) + " payload: " + why);
}

} // namespace

bool is_container_ext(const msgpack::object& o) noexcept {
  return o.type == msgpack::type::EXT && o.via.ext.type() >= 1 && o.via.ext.type() <= 3;
}

msgpack::object decode_ext_payload(const msgpack::object& ext, msgpack::zone& z,
                                   const limits& lim, std::size_t depth) {
  const auto type = ext.via.ext.type();
  const char* data = ext.via.ext.data();
  const std::size_t size = ext.via.ext.size;
  if (depth >= lim.max_depth)
    fail(type, "nesting deeper than " + std::to_string(lim.max_depth));
  // The payload must be an array (fixarray, array16, array32); the first byte says so, and
  // checking it first keeps scalars and maps from reaching the decoder at all.
  const auto first = size > 0 ? static_cast<unsigned char>(data[0]) : 0;
  if (size == 0 || !((first >= 0x90 && first <= 0x9f) || first == 0xdc || first == 0xdd))
    fail(type, "not a msgpack array");
  limits inner = lim;
  inner.max_depth = lim.max_depth - depth;
  if (auto err = check_structure({data, size}, inner))
    fail(type, *err);
  // check_structure bounded every count by the payload's size; msgpack-cxx's own limits are
  // the second line of defence.
  const auto elements = std::min(size, lim.max_elements);
  msgpack::unpack_limit ul(elements, elements, size, size, size, inner.max_depth);
  std::size_t off = 0;
  auto result = msgpack::unpack(z, data, size, off, &reference_everything, nullptr, ul);
  if (result.type != msgpack::type::ARRAY || off != size)
    fail(type, "not a single msgpack array");
  return result;
}

} // namespace pyvisor::core
