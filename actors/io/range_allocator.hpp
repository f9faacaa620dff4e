#pragma once

#include <cstdint>
#include <iterator>
#include <map>
#include <optional>

namespace pyvisor::io {

/// First-fit over [0, size): ranges rounded up to `align` bytes, free neighbours merged. The
/// lowest offsets are reused first, so a steady load keeps touching the same pages. Not
/// thread-safe (its owner locks).
class range_allocator {
public:
  range_allocator(std::uint64_t size, std::uint64_t align) : align_(align) {
    if (size > 0)
      free_.emplace(0, size);
  }

  /// The offset of a free range of `n` bytes (at least 1), taken; nullopt when none fits.
  std::optional<std::uint64_t> take(std::uint64_t n) {
    n = round(n == 0 ? 1 : n);
    for (auto i = free_.begin(); i != free_.end(); ++i) {
      if (i->second < n)
        continue;
      auto at = i->first;
      auto left = i->second - n;
      free_.erase(i);
      if (left > 0)
        free_.emplace(at + n, left);
      taken_.emplace(at, n);
      return at;
    }
    return std::nullopt;
  }

  /// Gives back the range taken at `at`: its (rounded) size; 0 when none was taken there.
  std::uint64_t give(std::uint64_t at) {
    auto t = taken_.find(at);
    if (t == taken_.end())
      return 0;
    auto n = t->second;
    auto size = n;
    taken_.erase(t);
    auto next = free_.lower_bound(at);
    if (next != free_.end() && next->first == at + n) {
      n += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {
      auto prev = std::prev(next);
      if (prev->first + prev->second == at) {
        prev->second += n;
        return size;
      }
    }
    free_.emplace(at, n);
    return size;
  }

  /// The (rounded) size of the range taken at `at`; 0 when none is.
  std::uint64_t size_of(std::uint64_t at) const {
    auto t = taken_.find(at);
    return t == taken_.end() ? 0 : t->second;
  }

  /// Ranges taken and not given back.
  std::size_t taken() const noexcept { return taken_.size(); }

private:
  std::uint64_t round(std::uint64_t n) const { return (n + align_ - 1) / align_ * align_; }

  std::uint64_t align_;
  std::map<std::uint64_t, std::uint64_t> free_;   // offset -> size
  std::map<std::uint64_t, std::uint64_t> taken_;  // offset -> size
};

} // namespace pyvisor::io
