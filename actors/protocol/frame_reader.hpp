#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace pyvisor::protocol {

/// Splits a byte stream into frames (4-byte big-endian length + body). Pure: no I/O.
///
/// Use: `auto [p, n] = r.write_area(); n = read(fd, p, n); r.commit(n);` then call `next()`
/// until it returns `need_more`. A declared length above the limit or zero is reported as an
/// error *before* any buffer for it is allocated.
class frame_reader {
public:
  enum class status : std::uint8_t { frame, need_more, too_large, empty_frame };

  struct result {
    status st;
    std::string_view body;        ///< valid until the next call of write_area/commit/feed,
                                  ///< or as long as `owner` lives when it is set
    std::uint32_t declared = 0;   ///< the declared length, for error messages
    std::shared_ptr<const char[]> owner;  ///< large frames: the buffer the body lives in
  };

  /// Frames above `large_threshold` bytes get a buffer of their own, allocated once at their
  /// exact size (uninitialized) and read into directly; next() hands it out with the body, so
  /// the decoder can reference it instead of copying.
  explicit frame_reader(std::size_t max_frame_bytes, std::size_t read_chunk = 256 * 1024,
                        std::size_t large_threshold = 1 << 20);

  /// A writable area (sized for the frame being assembled, if known). Empty only while a
  /// complete large frame waits to be taken by next().
  std::pair<char*, std::size_t> write_area();

  /// Marks `n` bytes of the last write_area as filled.
  void commit(std::size_t n) noexcept;

  /// Copies `data` in (for tests and for callers that already have the bytes).
  void feed(std::string_view data);

  /// The next complete frame, or why there is none.
  result next();

  /// Bytes buffered but not yet returned as frames.
  std::size_t buffered() const noexcept {
    return end_ - begin_ + (big_ ? 4 + big_filled_ : 0) + pending_.size();
  }

  /// When everything read was handed out: gives the read buffer back (to a spare kept per
  /// thread, which the next write_area() of any reader on that thread takes again), so an idle
  /// reader holds no buffer. Body views from next() are invalid afterwards, as after write_area().
  void release_if_empty() noexcept;

  /// Bytes of read buffer this reader holds now (not counting a large frame's own buffer).
  std::size_t capacity() const noexcept { return cap_; }

private:
  std::size_t max_;
  std::size_t chunk_;
  std::unique_ptr<char[]> buf_;  // never zero-filled: only [begin_, end_) is ever read
  std::size_t cap_ = 0;
  std::size_t begin_ = 0;
  std::size_t end_ = 0;
  std::size_t want_ = 0;  // total bytes (header + body) of the frame being assembled, 0 = unknown
  std::size_t large_;
  std::shared_ptr<char[]> big_;  // the large frame being assembled (body only)
  std::size_t big_len_ = 0;
  std::size_t big_filled_ = 0;
  std::string pending_;  // feed(): input not yet moved into a buffer
  void pump_pending();
};

/// Writes the 4-byte big-endian length prefix for `n` at `out`.
inline void put_length(char* out, std::uint32_t n) noexcept {
  out[0] = static_cast<char>(n >> 24);
  out[1] = static_cast<char>(n >> 16);
  out[2] = static_cast<char>(n >> 8);
  out[3] = static_cast<char>(n);
}

} // namespace pyvisor::protocol
