#pragma once

#include <cstddef>

#include <msgpack.hpp>

#include "core/limits.hpp"

namespace pyvisor::core {

/// Whether `o` is a Python tuple, set or frozenset: an ext of type 1, 2 or 3, whose payload is
/// itself one msgpack array (docs/protocol.md).
bool is_container_ext(const msgpack::object& o) noexcept;

/// The one decoder of those payloads; both pyvisor::value's expansion and the adaptors of
/// pyvisor::tuple/set/frozenset use it, so no path decodes a payload without limits.
///
/// - The payload is checked first by check_structure (no allocation), with the frame limits
///   `lim` and `lim.max_depth` reduced by `depth`, the number of container levels above the
///   ext (a tuple's array is one level, as in the frame and in the runner's codecs). A forged
///   header declaring 2^28 elements in a few bytes is refused before msgpack-cxx sees it.
/// - It is decoded once, by reference: strings, binaries and nested exts of the result point
///   into `ext`'s payload bytes, and only the object tree is allocated in `z`. Nested tuples
///   therefore cost O(payload structure), never a copy of the bytes per level. The caller
///   keeps both the payload's memory and `z` alive as long as the result is used.
///
/// Returns the ARRAY object. Throws msgpack::unpack_error whose what() names the ext and the
/// violated limit or defect, e.g. "tuple payload: container of 268435456 elements exceeds the
/// limit of 4194304".
msgpack::object decode_ext_payload(const msgpack::object& ext, msgpack::zone& z,
                                   const limits& lim = {}, std::size_t depth = 0);

} // namespace pyvisor::core
