#pragma once

#include <cstddef>

namespace pyvisor::core {

/// Hard limits on what a peer may send. Checked before anything is allocated.
struct limits {
  std::size_t max_frame_bytes = std::size_t{64} << 20;  ///< body bytes of one frame
  std::size_t max_depth = 128;                          ///< container nesting (body array = 1)
  std::size_t max_elements = std::size_t{1} << 22;      ///< elements of one container
  /// Refuse ext type 6 (a shared-memory reference): only the runtime may make one.
  bool refuse_shared_refs = false;
};

} // namespace pyvisor::core
