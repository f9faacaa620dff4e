// Fuzz harness: protocol::frame_reader fed a byte stream in arbitrary chunkings, through either
// of its APIs, compared frame by frame with a straightforward reference split of the stream.
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz/harness.hpp"
#include "protocol/frame_reader.hpp"

namespace pyvisor::fuzz {

namespace {

using protocol::frame_reader;

struct expected_frame {
  frame_reader::status st;
  std::string body;
  std::uint32_t declared;
};

/// What the stream must produce: every complete frame, then (if the stream says so) the error
/// that ends it. A trailing partial frame produces nothing.
std::vector<expected_frame> reference_split(std::string_view s, std::size_t max) {
  std::vector<expected_frame> out;
  std::size_t pos = 0;
  while (s.size() - pos >= 4) {
    auto b = reinterpret_cast<const unsigned char*>(s.data() + pos);
    std::uint32_t len = (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) |
                        (std::uint32_t{b[2]} << 8) | b[3];
    if (len == 0) {
      out.push_back({frame_reader::status::empty_frame, {}, 0});
      break;
    }
    if (len > max) {
      out.push_back({frame_reader::status::too_large, {}, len});
      break;
    }
    if (s.size() - pos - 4 < len)
      break;
    out.push_back({frame_reader::status::frame, std::string{s.substr(pos + 4, len)}, len});
    pos += 4 + std::size_t{len};
  }
  return out;
}

} // namespace

int fuzz_frame_reader(const std::uint8_t* data, std::size_t size) {
  if (size < 2)
    return 0;
  // Byte 0: bit 0 the API (write_area/commit or feed), bits 1-2 the large-frame threshold,
  // bits 3-4 the read chunk, bits 5-6 max_frame_bytes. Small values make the large-frame path
  // and buffer compaction reachable with inputs of a few hundred bytes. (Chunk and threshold
  // sizes stay modest: under ASan a 256 KiB read buffer is an mmap with shadow poisoning, and
  // each large-frame buffer (2 MiB aligned, MADV_HUGEPAGE) costs ~5 ms here, so a threshold
  // of a few bytes would cut the executions per second a hundredfold.)
  const std::uint8_t cfg = data[0];
  const bool use_feed = cfg & 1;
  // Likewise max_frame_bytes: a header alone makes the reader allocate up to the declared
  // length (by design, after the limit check), so 64 MiB would dominate every run.
  static constexpr std::size_t thresholds[] = {std::size_t{1} << 20, 4096, 1024, 200};
  static constexpr std::size_t chunks[] = {4096, 1, 7, 64};
  static constexpr std::size_t maxes[] = {std::size_t{1} << 16, 16, 255, 4096};
  const std::size_t large = thresholds[(cfg >> 1) & 3];
  const std::size_t chunk = chunks[(cfg >> 3) & 3];
  const std::size_t max = maxes[(cfg >> 5) & 3];
  // Byte 1: how many chunk-size bytes follow (0: the whole stream at once).
  std::size_t nsizes = data[1] & 15;
  if (size < 2 + nsizes)
    return 0;
  std::vector<std::size_t> sizes;
  for (std::size_t i = 0; i < nsizes; ++i)
    sizes.push_back(data[2 + i] == 0 ? 256 : data[2 + i]);
  std::string_view stream{reinterpret_cast<const char*>(data + 2 + nsizes), size - 2 - nsizes};

  const auto want = reference_split(stream, max);
  frame_reader rd{max, chunk, large};
  std::size_t got = 0;        // frames (and the final error) seen so far
  bool ended = false;         // an error status ended the stream
  std::size_t fed = 0, consumed = 0;

  auto drain = [&] {
    for (;;) {
      auto r = rd.next();
      if (r.st == frame_reader::status::need_more)
        return;
      PYVISOR_FUZZ_CHECK(got < want.size());
      const auto& w = want[got++];
      PYVISOR_FUZZ_CHECK(r.st == w.st);
      PYVISOR_FUZZ_CHECK(r.declared == w.declared);
      if (r.st != frame_reader::status::frame) {
        ended = true;
        return;
      }
      PYVISOR_FUZZ_CHECK(r.body == w.body);
      // A large frame's body is its own buffer, which the result keeps alive.
      PYVISOR_FUZZ_CHECK(!r.owner || r.body.data() == r.owner.get());
      consumed += 4 + r.body.size();
    }
  };

  std::size_t pos = 0;
  for (std::size_t i = 0; pos < stream.size() && !ended; ++i) {
    std::size_t n = sizes.empty() ? stream.size() : std::min(sizes[i % sizes.size()], stream.size() - pos);
    auto piece = stream.substr(pos, n);
    pos += n;
    if (use_feed) {
      rd.feed(piece);
      fed += piece.size();
      drain();
    } else {
      while (!piece.empty() && !ended) {
        auto [p, room] = rd.write_area();
        if (room == 0) {
          // Only while a complete large frame waits for next(); taking it must make room.
          auto before = got;
          drain();
          PYVISOR_FUZZ_CHECK(got > before);
          continue;
        }
        auto k = std::min(room, piece.size());
        std::memcpy(p, piece.data(), k);
        rd.commit(k);
        fed += k;
        piece.remove_prefix(k);
        drain();
      }
    }
    if (!ended)
      PYVISOR_FUZZ_CHECK(rd.buffered() == fed - consumed);
  }
  if (!ended)
    drain();
  // Every complete frame came out, in order, and nothing else.
  PYVISOR_FUZZ_CHECK(got == want.size());
  return 0;
}

} // namespace pyvisor::fuzz
