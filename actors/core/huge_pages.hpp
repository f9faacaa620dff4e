#pragma once

#include <cstddef>

namespace pyvisor::core {

/// Buffers from this size on are worth transparent huge pages: filling a fresh 64 MiB buffer
/// costs ~16 000 page faults with 4 KiB pages, ~32 with 2 MiB ones (about 2x faster here).
constexpr std::size_t huge_pages_from = std::size_t{4} << 20;

/// Marks the 2 MiB-aligned part of [p, p + n) MADV_HUGEPAGE (what THP's "madvise" mode, the
/// default here, needs). Advisory: a failure only costs speed.
void advise_huge_pages(void* p, std::size_t n) noexcept;

} // namespace pyvisor::core
