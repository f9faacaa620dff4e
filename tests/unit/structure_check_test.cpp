#include "core/structure_check.hpp"

#include <gtest/gtest.h>

#include <msgpack.hpp>

using pyvisor::core::check_structure;
using pyvisor::core::limits;

namespace {

template <class T>
std::string pack(const T& x) {
  msgpack::sbuffer b;
  msgpack::pack(b, x);
  return {b.data(), b.size()};
}

std::string nested(std::size_t depth) {
  std::string s;
  for (std::size_t i = 0; i < depth; ++i)
    s += '\x91';  // fixarray of 1
  s += '\xc0';
  return s;
}

} // namespace

TEST(structure_check, accepts_ordinary_values) {
  limits lim;
  EXPECT_FALSE(check_structure(pack(std::vector<int>{1, 2, 3}), lim));
  EXPECT_FALSE(check_structure(pack(std::map<std::string, double>{{"a", 1.5}}), lim));
  EXPECT_FALSE(check_structure(pack(std::string(70000, 'x')), lim));
  EXPECT_FALSE(check_structure(pack(std::vector<std::vector<int>>{{}, {1}, {}}), lim));
  EXPECT_FALSE(check_structure(std::string("\xc0", 1), lim));
  EXPECT_FALSE(check_structure(std::string("\xd4\x01\x02", 3), lim));  // fixext1
}

TEST(structure_check, huge_declared_array_rejected) {
  limits lim;
  auto err = check_structure(std::string("\xdd\xff\xff\xff\xff", 5), lim);
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("elements"), std::string::npos) << *err;
  EXPECT_TRUE(check_structure(std::string("\xdf\x00\x01\x00\x00", 5), lim));  // map32 of 65536
}

TEST(structure_check, count_must_fit_remaining_bytes) {
  limits lim;
  // array16 of 3 with only 2 elements present
  EXPECT_TRUE(check_structure(std::string("\xdc\x00\x03\x01\x02", 5), lim));
  EXPECT_FALSE(check_structure(std::string("\xdc\x00\x03\x01\x02\x03", 6), lim));
}

TEST(structure_check, depth_limit) {
  limits lim;
  lim.max_depth = 128;
  EXPECT_FALSE(check_structure(nested(128), lim));
  auto err = check_structure(nested(129), lim);
  ASSERT_TRUE(err);
  EXPECT_NE(err->find("nesting"), std::string::npos) << *err;
  EXPECT_TRUE(check_structure(nested(100000), lim));
}

TEST(structure_check, element_limit) {
  limits lim;
  lim.max_elements = 3;
  EXPECT_FALSE(check_structure(pack(std::vector<int>{1, 2, 3}), lim));
  EXPECT_TRUE(check_structure(pack(std::vector<int>{1, 2, 3, 4}), lim));
  EXPECT_FALSE(check_structure(pack(std::map<int, int>{{1, 1}, {2, 2}, {3, 3}}), lim));
  EXPECT_TRUE(check_structure(pack(std::map<int, int>{{1, 1}, {2, 2}, {3, 3}, {4, 4}}), lim));
}

TEST(structure_check, truncated_and_trailing_and_invalid) {
  limits lim;
  EXPECT_TRUE(check_structure(std::string("\xdb\xff\xff\xff\xff", 5), lim));  // str32 4 GiB
  EXPECT_TRUE(check_structure(std::string("\xa5hi", 3), lim));
  EXPECT_TRUE(check_structure(std::string("\xcd\x01", 2), lim));
  EXPECT_TRUE(check_structure(std::string("\x01\x02", 2), lim));  // two values
  EXPECT_TRUE(check_structure(std::string("\xc1", 1), lim));      // never used
  EXPECT_TRUE(check_structure(std::string(), lim));
  EXPECT_TRUE(check_structure(std::string("\xc7\x05\x01\x00", 4), lim));  // ext8 short
}

TEST(structure_check, every_truncation_of_a_valid_value_is_rejected) {
  limits lim;
  std::map<std::string, std::vector<double>> m{{"alpha", {1.0, 2.5}}, {"b", {}}, {"gamma", {3}}};
  auto s = pack(m);
  EXPECT_FALSE(check_structure(s, lim));
  for (std::size_t cut = 0; cut < s.size(); ++cut)
    EXPECT_TRUE(check_structure(s.substr(0, cut), lim)) << cut;
}
