#pragma once

// The frame of a runner's reply whose `ok` is a shared-memory reference (ext 6 or 8), as the
// unit tests of the shared area build it in place of a runner.
#include <cstdint>
#include <string>
#include <string_view>

#include "protocol/message.hpp"

namespace pyvisor::test {

inline std::string shared_reply_frame(std::uint64_t at, std::uint64_t n,
                                      std::int8_t type = protocol::ext_shared_bytes) {
  protocol::frame_builder fb;
  auto& pk = fb.packer();
  pk.pack_array(4);
  pk.pack(1);
  pk.pack(5);
  pk.pack(std::string_view{"eval"});
  pk.pack_map(1);
  pk.pack(std::string_view{"ok"});
  char ref[protocol::shared_ref_size];
  protocol::put_shared_ref(ref, at, n, type);
  fb.raw(std::string(ref, sizeof ref));
  return std::move(fb).finish();
}

} // namespace pyvisor::test
