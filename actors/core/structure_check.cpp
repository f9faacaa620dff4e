#include "core/structure_check.hpp"

#include "pyvisor/ndarray.hpp"

#include <cstdint>
#include <vector>

namespace pyvisor::core {

namespace {

std::uint64_t be(const unsigned char* p, int n) noexcept {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i)
    v = (v << 8) | p[i];
  return v;
}

} // namespace

std::optional<std::string> check_structure(std::string_view body, const limits& lim) {
  auto p = reinterpret_cast<const unsigned char*>(body.data());
  const std::size_t n = body.size();
  std::size_t pos = 0;
  // remaining[d] = elements still expected by the open container at depth d+1 (maps count
  // keys and values). The top level expects exactly one value.
  std::vector<std::uint64_t> remaining;
  remaining.reserve(16);
  std::uint64_t top = 1;
  // Total elements still owed by every open container; each needs >= 1 byte.
  std::uint64_t owed = 1;

  auto need = [&](std::size_t k) { return n - pos >= k; };

  while (owed > 0) {
    if (pos >= n)
      return "truncated msgpack value at byte " + std::to_string(pos);
    // One element is being consumed now.
    if (remaining.empty())
      --top;
    else
      --remaining.back();
    --owed;

    const unsigned char t = p[pos++];
    std::uint64_t skip = 0;      // payload bytes to skip
    std::uint64_t children = 0;  // elements of a new container
    bool container = false;

    if (t <= 0x7f || t >= 0xe0 || t == 0xc0 || t == 0xc2 || t == 0xc3) {
      // fixint, negative fixint, nil, false, true
    } else if (t >= 0x80 && t <= 0x8f) {
      container = true, children = std::uint64_t(t & 0x0f) * 2;
    } else if (t >= 0x90 && t <= 0x9f) {
      container = true, children = t & 0x0f;
    } else if (t >= 0xa0 && t <= 0xbf) {
      skip = t & 0x1f;
    } else {
      int hdr = 0;
      switch (t) {
        case 0xc4: case 0xd9: hdr = 1; break;                  // bin8, str8
        case 0xc5: case 0xda: hdr = 2; break;                  // bin16, str16
        case 0xc6: case 0xdb: hdr = 4; break;                  // bin32, str32
        case 0xc7: hdr = 1; break;                             // ext8
        case 0xc8: hdr = 2; break;                             // ext16
        case 0xc9: hdr = 4; break;                             // ext32
        case 0xca: skip = 4; break;                            // float32
        case 0xcb: skip = 8; break;                            // float64
        case 0xcc: case 0xd0: skip = 1; break;                 // uint8, int8
        case 0xcd: case 0xd1: skip = 2; break;
        case 0xce: case 0xd2: skip = 4; break;
        case 0xcf: case 0xd3: skip = 8; break;
        case 0xd4: skip = 2; break;                            // fixext1: type + 1
        case 0xd5: skip = 3; break;
        case 0xd6: skip = 5; break;
        case 0xd7: skip = 9; break;
        case 0xd8: skip = 17; break;
        case 0xdc: case 0xde: hdr = 2; container = true; break; // array16, map16
        case 0xdd: case 0xdf: hdr = 4; container = true; break; // array32, map32
        default:
          return "invalid msgpack type byte 0x" +
                 std::string{"0123456789abcdef"[t >> 4]} + "0123456789abcdef"[t & 15] +
                 " at byte " + std::to_string(pos - 1);
      }
      if (hdr > 0) {
        if (!need(static_cast<std::size_t>(hdr)))
          return "truncated msgpack header at byte " + std::to_string(pos - 1);
        auto len = be(p + pos, hdr);
        pos += static_cast<std::size_t>(hdr);
        if (container) {
          children = (t == 0xde || t == 0xdf) ? len * 2 : len;
        } else {
          skip = len + ((t >= 0xc7 && t <= 0xc9) ? 1 : 0);  // ext: + type byte
        }
      }
    }

    if (container) {
      auto elements = (t >= 0x80 && t <= 0x8f) || t == 0xde || t == 0xdf ? children / 2 : children;
      if (elements > lim.max_elements)
        return "container of " + std::to_string(elements) + " elements exceeds the limit of " +
               std::to_string(lim.max_elements);
      if (remaining.size() + 1 > lim.max_depth)
        return "nesting deeper than " + std::to_string(lim.max_depth);
      owed += children;
      if (owed > n - pos)
        return "declared element count exceeds the " + std::to_string(n - pos) +
               " bytes left";
      if (children > 0)
        remaining.push_back(children);
    } else {
      if (skip > n - pos)
        return "declared length " + std::to_string(skip) + " exceeds the " +
               std::to_string(n - pos) + " bytes left";
      // An ext's type byte is the first of what is skipped.
      bool ext = (t >= 0xd4 && t <= 0xd8) || (t >= 0xc7 && t <= 0xc9);
      if (ext && lim.refuse_shared_refs && skip > 0) {
        if (p[pos] == 6 || p[pos] == 8)
          return "ext type " + std::to_string(p[pos]) + " at byte " + std::to_string(pos) +
                 " (a shared-memory reference: only the runtime makes those)";
        if (p[pos] == 7) {
          // An ndarray: its header is checked here too, so a malformed one fails where it
          // was made (the runner would refuse it anyway).
          auto parts = detail::parse_ndarray(reinterpret_cast<const char*>(p + pos + 1), skip - 1);
          if (!parts)
            return "at byte " + std::to_string(pos) + ": " + parts.error().message;
        }
        if (p[pos] >= 1 && p[pos] <= 3) {
          // A tuple's or set's items are msgpack too, and the runner decodes them: look
          // inside, one level deeper (so the recursion ends at max_depth).
          if (remaining.size() + 2 > lim.max_depth)
            return "nesting deeper than " + std::to_string(lim.max_depth);
          limits inner = lim;
          inner.max_depth = lim.max_depth - remaining.size() - 1;
          if (auto err = check_structure(body.substr(pos + 1, skip - 1), inner))
            return "in the ext " + std::to_string(p[pos]) + " at byte " + std::to_string(pos) +
                   ": " + *err;
        }
      }
      pos += static_cast<std::size_t>(skip);
    }
    // Close finished containers.
    while (!remaining.empty() && remaining.back() == 0)
      remaining.pop_back();
  }
  (void) top;
  if (pos != n)
    return std::to_string(n - pos) + " trailing bytes after the msgpack value";
  return std::nullopt;
}

} // namespace pyvisor::core
