#pragma once

#include <optional>
#include <string>
#include <string_view>

#include "core/limits.hpp"

namespace pyvisor::core {

/// Walks the msgpack bytes of one frame body without decoding or allocating, and checks that
/// they hold exactly one well-formed value within `lim`: nesting depth, element counts, and
/// that every declared count and length fits in the bytes that remain (each element needs at
/// least one byte). Only after this passes is the body handed to msgpack-cxx, so a hostile
/// header such as `dd ff ff ff ff` (an array of 2^32-1 elements in 5 bytes) never reaches an
/// allocator. Returns an error description, or nullopt when the body is acceptable.
std::optional<std::string> check_structure(std::string_view body, const limits& lim);

} // namespace pyvisor::core
