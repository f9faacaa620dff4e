#pragma once

#include <cstddef>

namespace pyvisor::core {

/// Marks the 2 MiB-aligned part of [p, p + n) MADV_HUGEPAGE (what THP's "madvise" mode, the
/// default here, needs). Advisory: a failure only costs speed.
void advise_huge_pages(void* p, std::size_t n) noexcept;

} // namespace pyvisor::core
