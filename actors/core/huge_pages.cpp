#include "core/huge_pages.hpp"

#include <cstdint>
#include <string>
#include <sys/mman.h>

#include "pyvisor/msgpack_writer.hpp"

namespace pyvisor::core {

void advise_huge_pages(void* p, std::size_t n) noexcept {
  constexpr std::uintptr_t huge = std::uintptr_t{2} << 20;
  auto begin = (reinterpret_cast<std::uintptr_t>(p) + huge - 1) & ~(huge - 1);
  auto end = (reinterpret_cast<std::uintptr_t>(p) + n) & ~(huge - 1);
  if (end > begin)
    ::madvise(reinterpret_cast<void*>(begin), end - begin, MADV_HUGEPAGE);
}

} // namespace pyvisor::core

namespace pyvisor::detail {

void reserve_large(std::string& s, std::size_t more) {
  auto old = s.size();
  s.reserve(old + more);
  // Before the first write: the pages are not faulted in yet.
  core::advise_huge_pages(s.data() + old, s.capacity() - old);
}

} // namespace pyvisor::detail
