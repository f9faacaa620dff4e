#include "pool/hash_ring.hpp"

#include <string>
#include <unordered_set>

namespace pyvisor::pooling {

std::uint64_t hash_ring::hash(std::string_view s) noexcept {
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 1099511628211ull;
  }
  // splitmix64's finalizer: spreads FNV's weak low bits over the ring.
  h ^= h >> 30;
  h *= 0xbf58476d1ce4e5b9ull;
  h ^= h >> 27;
  h *= 0x94d049bb133111ebull;
  h ^= h >> 31;
  return h;
}

void hash_ring::add(std::uint32_t slot) {
  for (int i = 0; i < replicas_; ++i)
    points_.emplace(hash("slot-" + std::to_string(slot) + "#" + std::to_string(i)), slot);
}

void hash_ring::remove(std::uint32_t slot) {
  for (auto i = points_.begin(); i != points_.end();)
    i = i->second == slot ? points_.erase(i) : std::next(i);
}

std::optional<std::uint32_t>
hash_ring::find(std::string_view key, const std::function<bool(std::uint32_t)>& usable) const {
  if (points_.empty())
    return std::nullopt;
  auto start = points_.lower_bound(hash(key));
  std::unordered_set<std::uint32_t> refused;
  auto i = start;
  for (std::size_t n = 0; n < points_.size(); ++n, ++i) {
    if (i == points_.end())
      i = points_.begin();
    if (refused.count(i->second) != 0)
      continue;
    if (usable(i->second))
      return i->second;
    refused.insert(i->second);
  }
  return std::nullopt;
}

} // namespace pyvisor::pooling
