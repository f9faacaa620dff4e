#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string_view>

namespace pyvisor::pooling {

/// A consistent-hash ring of slots (Karger et al.): each slot owns `replicas` points on a 64-bit
/// ring; a key belongs to the first point at or after its hash. Removing a slot moves only the
/// keys it owned; adding one takes keys only from the points it lands between. Not thread-safe
/// (the dispatcher guards it).
class hash_ring {
public:
  explicit hash_ring(int replicas = 64) : replicas_(replicas) {}

  void add(std::uint32_t slot);
  void remove(std::uint32_t slot);
  bool empty() const noexcept { return points_.empty(); }

  /// The first slot clockwise from `key`'s hash for which `usable(slot)` holds; nullopt when
  /// none does.
  std::optional<std::uint32_t> find(std::string_view key,
                                    const std::function<bool(std::uint32_t)>& usable) const;

  /// 64-bit FNV-1a followed by a finalizer (stable across runs and builds, unlike std::hash).
  static std::uint64_t hash(std::string_view s) noexcept;

private:
  int replicas_;
  std::map<std::uint64_t, std::uint32_t> points_;
};

} // namespace pyvisor::pooling
