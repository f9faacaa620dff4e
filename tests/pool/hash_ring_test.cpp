// The pool layer (actors/pool) without processes: the consistent-hash ring, a pure policy, as a
// plain object driven with chosen inputs: how keys spread over the slots, that a key always maps
// to the same slot, and that removing a slot or skipping an unusable one moves only its keys.

#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "pool/hash_ring.hpp"
#include "pool/pool_test_support.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

using pooling::hash_ring;
using usable_fn = std::function<bool(std::uint32_t)>;

const usable_fn every_slot = [](std::uint32_t) { return true; };
constexpr int n_keys = 10000;

hash_ring ring_of(std::initializer_list<std::uint32_t> slots) {
  hash_ring r;
  for (auto s : slots)
    r.add(s);
  return r;
}

/// The owner of every test key (0: none).
std::vector<std::uint32_t> owners(const hash_ring& r, const usable_fn& usable = every_slot) {
  std::vector<std::uint32_t> out;
  out.reserve(n_keys);
  for (int i = 0; i < n_keys; ++i) {
    auto o = r.find(key_of(i), usable);
    out.push_back(o ? *o : 0);
  }
  return out;
}

} // namespace

TEST(hash_ring, spreads_keys_roughly_evenly_over_the_slots) {
  auto r = ring_of({1, 2, 3, 4});
  std::map<std::uint32_t, int> count;
  for (auto o : owners(r))
    ++count[o];
  ASSERT_EQ(count.size(), 4u);
  EXPECT_EQ(count.count(0), 0u) << "every key has an owner";
  for (auto& [slot, n] : count) {
    EXPECT_GE(n, n_keys * 15 / 100) << "slot " << slot;
    EXPECT_LE(n, n_keys * 35 / 100) << "slot " << slot;
  }
}

TEST(hash_ring, the_same_key_always_maps_to_the_same_slot) {
  auto a = ring_of({1, 2, 3, 4});
  auto b = ring_of({4, 3, 2, 1});  // the order of adding does not matter
  auto first = owners(a);
  EXPECT_EQ(owners(a), first);
  EXPECT_EQ(owners(b), first);
  EXPECT_EQ(hash_ring::hash("user:7"), hash_ring::hash(std::string{"user:"} + "7"));
  EXPECT_NE(hash_ring::hash("user:7"), hash_ring::hash("user:8"));
}

TEST(hash_ring, removing_a_slot_moves_only_its_keys) {
  auto r = ring_of({1, 2, 3, 4});
  auto before = owners(r);
  r.remove(3);
  auto after = owners(r);
  int moved = 0;
  std::set<std::uint32_t> heirs;
  for (int i = 0; i < n_keys; ++i) {
    if (before[i] == 3) {
      ++moved;
      EXPECT_NE(after[i], 3u);
      EXPECT_NE(after[i], 0u);
      heirs.insert(after[i]);
    } else {
      EXPECT_EQ(after[i], before[i]) << key_of(i) << " belonged to " << before[i];
    }
  }
  EXPECT_GT(moved, 0);
  EXPECT_GE(heirs.size(), 2u) << "with many points per slot, a removed slot's keys spread out";
  r.add(3);  // back: exactly the original mapping
  EXPECT_EQ(owners(r), before);
}

TEST(hash_ring, an_unusable_slot_hands_its_keys_on_and_leaves_the_others_alone) {
  auto r = ring_of({1, 2, 3, 4});
  auto before = owners(r);
  auto after = owners(r, [](std::uint32_t s) { return s != 2; });
  int moved = 0;
  for (int i = 0; i < n_keys; ++i) {
    if (before[i] == 2) {
      ++moved;
      EXPECT_NE(after[i], 2u);
      EXPECT_NE(after[i], 0u);
    } else {
      EXPECT_EQ(after[i], before[i]) << key_of(i);
    }
  }
  EXPECT_GT(moved, 0);
  // Skipping slot 2 routes as if it had been removed.
  auto without = ring_of({1, 3, 4});
  EXPECT_EQ(owners(without), after);
}

TEST(hash_ring, an_empty_ring_or_no_usable_slot_gives_nullopt) {
  hash_ring r;
  EXPECT_TRUE(r.empty());
  EXPECT_FALSE(r.find("k", every_slot));
  r.add(1);
  r.add(2);
  EXPECT_FALSE(r.empty());
  int asked = 0;
  EXPECT_FALSE(r.find("k", [&](std::uint32_t) {
    ++asked;
    return false;
  }));
  EXPECT_EQ(asked, 2) << "each slot is asked once, not once per point";
  r.remove(1);
  r.remove(2);
  EXPECT_TRUE(r.empty());
  EXPECT_FALSE(r.find("k", every_slot));
}
