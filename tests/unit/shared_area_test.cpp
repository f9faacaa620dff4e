// Shared memory for large bytes, host side without a process: the range allocator, request
// frames with slots, and the area's placement, release and resolution of references.
#include "io/range_allocator.hpp"
#include "io/shared_area.hpp"
#include "process/spawn.hpp"
#include "protocol/message.hpp"
#include "unit/shared_reply.hpp"

#include <cstring>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <gtest/gtest.h>

using namespace pyvisor;

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

std::string pattern(std::size_t n, int seed) {
  std::string s(n, '\0');
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<char>((i * 31 + static_cast<std::size_t>(seed)) & 0xFF);
  return s;
}

protocol::message decode_frame(const std::string& frame) {
  auto d = protocol::decode(std::string_view{frame}.substr(4), protocol::limits{});
  if (auto e = std::get_if<std::string>(&d))
    ADD_FAILURE() << *e;
  return std::get<protocol::message>(std::move(d));
}

} // namespace

TEST(range_allocator, first_fit_reuses_the_lowest_offsets_and_merges_neighbours) {
  io::range_allocator a{64 * 1024, 4096};
  auto x = a.take(5000);  // 8 KiB
  auto y = a.take(4096);
  auto z = a.take(1);
  ASSERT_TRUE(x && y && z);
  EXPECT_EQ(*x, 0u);
  EXPECT_EQ(*y, 8192u);
  EXPECT_EQ(*z, 12288u);
  EXPECT_FALSE(a.take(64 * 1024));  // 48 KiB are left
  EXPECT_TRUE(a.give(*y));
  EXPECT_FALSE(a.give(*y));  // not taken any more
  EXPECT_FALSE(a.give(4));   // never taken
  EXPECT_TRUE(a.give(*x));   // merges with y's range: 12 KiB at 0
  auto w = a.take(12288);
  ASSERT_TRUE(w);
  EXPECT_EQ(*w, 0u);
  EXPECT_TRUE(a.give(*w));
  EXPECT_TRUE(a.give(*z));  // everything free again, in one piece
  EXPECT_EQ(a.taken(), 0u);
  auto all = a.take(64 * 1024);
  ASSERT_TRUE(all);
  EXPECT_EQ(*all, 0u);
}

TEST(shared_frames, a_large_bin_becomes_a_slot_and_inline_frame_is_the_pipe_frame) {
  auto big = pattern(3 * mib, 1);
  std::vector<std::uint8_t> bytes(big.begin(), big.end());
  vars v{{"small", "abc"}, {"b", bytes}, {"s", big}};  // a str stays inline whatever its size
  protocol::request_extras x;
  auto plain = protocol::encode_code_request(9, "eval", "return b", v, "<f>", 1, x);
  x.slots_from = mib;
  auto out = protocol::encode_code_request_out(9, "eval", "return b", v, "<f>", 1, x);
  ASSERT_EQ(out.slots.size(), 1u);
  EXPECT_EQ(out.body_size(), plain.size() - 4);
  EXPECT_LT(out.bytes.size(), plain.size() - 3 * mib + 100);
  EXPECT_EQ(std::move(out).inline_frame(), plain);
  // Below the threshold, and with none, nothing changes.
  x.slots_from = 4 * mib;
  EXPECT_TRUE(protocol::encode_code_request_out(9, "eval", "return b", v, "<f>", 1, x).slots.empty());
  std::vector<arg> args{arg{bytes}, arg{1}};
  x.slots_from = mib;
  auto call = protocol::encode_call_out(4, "f", args, v, x);
  EXPECT_EQ(call.slots.size(), 2u);  // the positional one and the keyword
  EXPECT_EQ(std::move(call).inline_frame(), protocol::encode_call(4, "f", args, v, {}));
}

TEST(shared_area, placed_bytes_are_in_the_area_until_the_reply_and_references_are_checked) {
  constexpr std::size_t area_bytes = 8 * mib;
  int fd = process::make_shared_memory(area_bytes);
  ASSERT_GE(fd, 0);
  int view_fd = ::dup(fd);  // what the runner would see
  int view_fd_stat = ::dup(fd);  // for the pages in use
  auto area = io::shared_area::map(fd, area_bytes, 4 * mib);  // pages above 4 MiB go back
  ASSERT_TRUE(area) << area.error();
  auto* view = static_cast<char*>(
    ::mmap(nullptr, 2 * area_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, view_fd, 0));
  ::close(view_fd);
  ASSERT_NE(view, MAP_FAILED);

  auto big = pattern(3 * mib, 2);
  vars v{{"b", std::vector<std::uint8_t>(big.begin(), big.end())}};
  protocol::request_extras x;
  x.slots_from = mib;
  auto f1 = protocol::encode_code_request_out(1, "eval", "", v, "<f>", 1, x);
  auto f2 = protocol::encode_code_request_out(2, "eval", "", v, "<f>", 1, x);
  auto f3 = protocol::encode_code_request_out(3, "eval", "", v, "<f>", 1, x);
  ASSERT_TRUE((*area)->place(1, f1));
  ASSERT_TRUE((*area)->place(2, f2));
  EXPECT_FALSE((*area)->place(3, f3));  // 6 of 8 MiB are held: it stays as it was
  EXPECT_EQ(f3.slots.size(), 1u);
  // The frame holds a reference to bytes that are in the area.
  auto m = decode_frame(f2.bytes);
  auto b = protocol::map_get(*protocol::map_get(m.payload, "vars"), "b");
  ASSERT_NE(b, nullptr);
  std::uint64_t off = 0, len = 0;
  ASSERT_TRUE(protocol::get_shared_ref(*b, off, len));
  EXPECT_EQ(len, big.size());
  EXPECT_EQ(off % 4096, 0u);
  EXPECT_EQ(std::memcmp(view + off, big.data(), len), 0);
  auto resident = [&] {
    struct stat st {};
    ::fstat(view_fd_stat, &st);
    return static_cast<std::size_t>(st.st_blocks) * 512;
  };
  EXPECT_GE(resident(), 6 * mib);
  (*area)->release(2);  // request 2 answered: its range is free, and [4, 6) MiB goes back
  EXPECT_LE(resident(), 4 * mib + 64 * 1024);
  EXPECT_TRUE((*area)->place(3, f3));
  EXPECT_EQ((*area)->placed(), 3u);

  // Runner -> host: the reply's reference becomes a bin in the runner's half, kept by a lease.
  auto reply_bytes = pattern(2 * mib, 3);
  std::memcpy(view + area_bytes + 4096, reply_bytes.data(), reply_bytes.size());
  bool copy = false;
  auto resolve = [&](std::uint64_t at, std::uint64_t n, std::size_t max_frame, protocol::message& r) {
    auto fr = test::shared_reply_frame(at, n);
    r = decode_frame(fr);
    auto ok = const_cast<msgpack::object*>(protocol::map_get(r.payload, "ok"));
    return (*area)->resolve(r, *ok, fr.size() - 4, max_frame, copy);
  };
  protocol::message r;
  ASSERT_FALSE(resolve(4096, reply_bytes.size(), 64 * mib, r));
  {
    auto rep = protocol::parse_response(r);
    ASSERT_TRUE(rep.result);
    const auto& o = rep.result->object();
    ASSERT_EQ(o.type, msgpack::type::BIN);
    EXPECT_EQ(std::string_view(o.via.bin.ptr, o.via.bin.size), reply_bytes);
    r = {};
    EXPECT_TRUE((*area)->take_frees().empty());  // the value still holds it
  }
  EXPECT_EQ((*area)->take_frees(), std::vector<std::uint64_t>{4096});
  EXPECT_TRUE((*area)->take_frees().empty());
  // References outside the runner's half, and replies above the limit, are refused.
  EXPECT_TRUE(resolve(area_bytes - 10, 11, 64 * mib, r));
  EXPECT_TRUE(resolve(~std::uint64_t{0}, 2, 64 * mib, r));
  EXPECT_TRUE(resolve(0, area_bytes + 1, 64 * mib, r));
  EXPECT_TRUE(resolve(0, 2 * mib, 2 * mib, r));  // with its frame it is above 2 MiB
  EXPECT_FALSE(resolve(0, 2 * mib - 64, 2 * mib, r));
  EXPECT_EQ((*area)->resolved(), 2u);
  r = {};
  (*area)->take_frees();
  // Copied results: the value holds its own bytes, the range is free at once.
  copy = true;
  ASSERT_FALSE(resolve(4096, reply_bytes.size(), 64 * mib, r));
  EXPECT_FALSE(r.lease);
  {
    auto rep = protocol::parse_response(r);
    const auto& o = rep.result->object();
    EXPECT_EQ(std::string_view(o.via.bin.ptr, o.via.bin.size), reply_bytes);
    EXPECT_TRUE(o.via.bin.ptr < view || o.via.bin.ptr >= view + 2 * area_bytes);
    EXPECT_EQ((*area)->take_frees(), std::vector<std::uint64_t>{4096});
  }
  ::munmap(view, 2 * area_bytes);
  ::close(view_fd_stat);
}

TEST(shared_frames, a_user_made_shared_reference_is_refused) {
  // Only the runtime makes ext 6: one from outside would read the interpreter's area.
  std::string ref("\xd8\x06", 2);
  ref.append(16, '\0');
  auto top = arg::from_msgpack(ref);
  ASSERT_FALSE(top);
  EXPECT_EQ(top.error().code, errc::invalid_argument);
  EXPECT_NE(top.error().message.find("ext type 6"), std::string::npos) << top.error().message;
  EXPECT_FALSE(arg::from_msgpack("\x91" + ref));                          // in a list
  EXPECT_FALSE(arg::from_msgpack(std::string("\xc7\x10\x06", 3) + ref.substr(2)));  // as ext 8
  EXPECT_TRUE(arg::from_msgpack(std::string("\xd4\x05\x01", 3)));      // other exts pass
  // Inside a tuple, a set, or a tuple in a set: the runner decodes those items too.
  std::string in_tuple = std::string("\xc7\x13\x01\x91", 4) + ref;
  EXPECT_FALSE(arg::from_msgpack(in_tuple));
  std::string in_set = std::string("\xc7\x17\x02\x91", 4) + in_tuple;
  auto nested = arg::from_msgpack(in_set);
  ASSERT_FALSE(nested);
  EXPECT_NE(nested.error().message.find("ext type 6"), std::string::npos) << nested.error().message;
  EXPECT_FALSE(value_from_msgpack(in_tuple));
  // A tuple of plain items still passes.
  EXPECT_TRUE(arg::from_msgpack(std::string("\xd5\x01\x91\x07", 4)));
}

TEST(shared_area, the_memfd_is_sealed_at_its_size) {
  // A process that truncated it would make the host's next access a SIGBUS (a review).
  int fd = process::make_shared_memory(2 * mib);
  ASSERT_GE(fd, 0);
  int seals = ::fcntl(fd, F_GET_SEALS);
  EXPECT_EQ(seals & (F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL), F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_SEAL);
  EXPECT_NE(::ftruncate(fd, 0), 0);
  EXPECT_EQ(errno, EPERM);
  struct stat st {};
  ASSERT_EQ(::fstat(fd, &st), 0);
  EXPECT_EQ(static_cast<std::size_t>(st.st_size), 4 * mib);
  ::close(fd);
}
