#include "protocol/frame_reader.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

using pyvisor::protocol::frame_reader;
using st = frame_reader::status;

namespace {

std::string frame(const std::string& body) {
  std::string f(4, '\0');
  pyvisor::protocol::put_length(f.data(), static_cast<std::uint32_t>(body.size()));
  return f + body;
}

std::vector<std::string> drain(frame_reader& r) {
  std::vector<std::string> out;
  for (;;) {
    auto x = r.next();
    if (x.st != st::frame)
      break;
    out.emplace_back(x.body);
  }
  return out;
}

} // namespace

TEST(frame_reader, every_truncation_point_needs_more) {
  auto f = frame("\x94\x00\x01\xa4ping\x80");
  for (std::size_t cut = 0; cut < f.size(); ++cut) {
    frame_reader r{1024};
    r.feed(std::string_view{f}.substr(0, cut));
    EXPECT_EQ(r.next().st, st::need_more) << "cut at " << cut;
    r.feed(std::string_view{f}.substr(cut));
    auto x = r.next();
    ASSERT_EQ(x.st, st::frame) << "cut at " << cut;
    EXPECT_EQ(x.body, f.substr(4));
    EXPECT_EQ(r.next().st, st::need_more);
  }
}

TEST(frame_reader, chunked_equals_whole) {
  std::string stream;
  std::vector<std::string> bodies;
  for (int i = 1; i < 60; ++i) {
    bodies.push_back(std::string(static_cast<std::size_t>(i * 37 % 1000 + 1), static_cast<char>('a' + i % 26)));
    stream += frame(bodies.back());
  }
  for (std::size_t chunk : {1u, 2u, 3u, 7u, 64u, 4096u, 1u << 20}) {
    frame_reader r{4096, 128};
    std::vector<std::string> got;
    for (std::size_t i = 0; i < stream.size(); i += chunk) {
      r.feed(std::string_view{stream}.substr(i, chunk));
      for (auto& b : drain(r))
        got.push_back(b);
    }
    EXPECT_EQ(got, bodies) << "chunk " << chunk;
    EXPECT_EQ(r.buffered(), 0u);
  }
}

TEST(frame_reader, oversize_length_rejected_before_allocation) {
  frame_reader r{1 << 20, 4096};
  r.feed(std::string("\xff\xff\xff\xff", 4));  // claims 4 GiB
  auto x = r.next();
  EXPECT_EQ(x.st, st::too_large);
  EXPECT_EQ(x.declared, 0xffffffffu);
  // The buffer never grew towards the claimed size.
  auto [p, n] = r.write_area();
  EXPECT_LE(n, 8192u);
  (void) p;
}

TEST(frame_reader, limit_is_inclusive) {
  frame_reader r{8};
  r.feed(frame("12345678"));
  EXPECT_EQ(r.next().st, st::frame);
  r.feed(frame("123456789"));
  EXPECT_EQ(r.next().st, st::too_large);
}

TEST(frame_reader, empty_frame_is_an_error) {
  frame_reader r{8};
  r.feed(std::string(4, '\0'));
  EXPECT_EQ(r.next().st, st::empty_frame);
}

TEST(frame_reader, large_frame_is_read_in_place) {
  frame_reader r{64 << 20, 4096};
  std::string body(3 << 20, 'x');
  auto f = frame(body);
  std::size_t pos = 0;
  while (pos < f.size()) {
    auto [p, n] = r.write_area();
    auto k = std::min(n, f.size() - pos);
    std::memcpy(p, f.data() + pos, k);
    r.commit(k);
    pos += k;
    if (pos < f.size()) {
      ASSERT_EQ(r.next().st, st::need_more);
    }
  }
  auto x = r.next();
  ASSERT_EQ(x.st, st::frame);
  EXPECT_EQ(x.body.size(), body.size());
}

TEST(frame_reader, an_idle_reader_holds_no_buffer_and_readers_share_the_threads_spare) {
  frame_reader a{1024, 4096}, b{1024, 4096};
  EXPECT_EQ(a.capacity(), 0u) << "no buffer before the first read";
  auto f = frame("hello");
  a.feed(f);
  ASSERT_GE(a.capacity(), 4096u);
  // A half-read frame keeps the buffer...
  a.feed(std::string_view{f}.substr(0, 3));
  ASSERT_EQ(drain(a), std::vector<std::string>{"hello"});
  a.release_if_empty();
  EXPECT_GE(a.capacity(), 4096u) << "released while a frame was half read";
  a.feed(std::string_view{f}.substr(3));
  ASSERT_EQ(drain(a), std::vector<std::string>{"hello"});
  auto first = a.write_area().first;  // everything handed out: the area starts at the base
  // ...and once everything was handed out it goes to the thread's spare, which the next reader
  // takes (no allocation on the hot path).
  a.release_if_empty();
  EXPECT_EQ(a.capacity(), 0u);
  EXPECT_EQ(a.buffered(), 0u);
  auto [p, n] = b.write_area();
  EXPECT_EQ(p, first) << "b did not reuse a's buffer";
  EXPECT_GE(n, 4096u);
  b.release_if_empty();
  // Reading again after a release works as before.
  a.feed(frame("x") + frame("yz"));
  EXPECT_EQ(drain(a), (std::vector<std::string>{"x", "yz"}));
}
