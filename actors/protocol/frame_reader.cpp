#include "protocol/frame_reader.hpp"

#include "core/huge_pages.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace pyvisor::protocol {

namespace {

std::uint32_t get_length(const char* p) noexcept {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         std::uint32_t{b[3]};
}

/// A buffer for one large frame: 2 MiB aligned and marked for transparent huge pages, so
/// filling 64 MiB costs ~32 page faults instead of ~16 000 (when THP is in madvise mode).
std::shared_ptr<char[]> large_buffer(std::size_t len) {
  constexpr std::size_t huge = std::size_t{2} << 20;
  auto rounded = (len + huge - 1) / huge * huge;
  void* p = std::aligned_alloc(huge, rounded);
  if (p == nullptr)
    return std::shared_ptr<char[]>(new char[len]);
  core::advise_huge_pages(p, rounded);
  return std::shared_ptr<char[]>(static_cast<char*>(p), [](char* q) { std::free(q); });
}

/// One read buffer kept per thread for whichever reader needs one next: the readers of one
/// I/O thread take turns with it, so idle interpreters hold none and the hot path allocates
/// nothing.
struct spare_buffer {
  std::unique_ptr<char[]> p;
  std::size_t cap = 0;
};
thread_local spare_buffer spare;

} // namespace

frame_reader::frame_reader(std::size_t max_frame_bytes, std::size_t read_chunk,
                           std::size_t large_threshold)
  : max_(max_frame_bytes), chunk_(read_chunk), large_(large_threshold) {
}

std::pair<char*, std::size_t> frame_reader::write_area() {
  if (big_)  // exactly the rest of the large frame: following frames stay in the pipe
    return {big_.get() + big_filled_, big_len_ - big_filled_};
  if (begin_ == end_) {
    begin_ = end_ = 0;
    // Give back memory held for a burst once it is consumed (the body views handed out by
    // next() are invalid from here on, as documented).
    if (cap_ > 4 * chunk_) {
      buf_.reset();
      cap_ = 0;
    }
  }
  std::size_t need = chunk_;
  if (want_ > 0 && begin_ + want_ > end_)
    need = std::max(need, begin_ + want_ - end_);
  if (cap_ == 0 && spare.cap >= need) {  // the thread's spare buffer
    buf_ = std::move(spare.p);
    cap_ = spare.cap;
    spare.cap = 0;
  }
  if (cap_ - end_ < need) {
    if (begin_ > 0) {  // compact: move the unconsumed tail to the front
      std::memmove(buf_.get(), buf_.get() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (cap_ - end_ < need) {
      auto grown = std::max(end_ + need, 2 * cap_);
      std::unique_ptr<char[]> next{new char[grown]};  // uninitialized
      if (end_ > 0)
        std::memcpy(next.get(), buf_.get(), end_);
      buf_ = std::move(next);
      cap_ = grown;
    }
  }
  return {buf_.get() + end_, cap_ - end_};
}

void frame_reader::release_if_empty() noexcept {
  if (cap_ == 0 || begin_ != end_)
    return;
  begin_ = end_ = 0;
  if (spare.cap == 0 && cap_ <= 4 * chunk_) {
    spare.p = std::move(buf_);
    spare.cap = cap_;
  } else {
    buf_.reset();
  }
  cap_ = 0;
}

void frame_reader::commit(std::size_t n) noexcept {
  if (big_)
    big_filled_ += n;
  else
    end_ += n;
}

void frame_reader::feed(std::string_view data) {
  pending_.append(data);
  pump_pending();
}

void frame_reader::pump_pending() {
  std::size_t off = 0;
  while (off < pending_.size()) {
    auto [p, n] = write_area();
    if (n == 0)
      break;  // a complete large frame waits for next()
    auto k = std::min(n, pending_.size() - off);
    std::memcpy(p, pending_.data() + off, k);
    commit(k);
    off += k;
  }
  pending_.erase(0, off);
}

frame_reader::result frame_reader::next() {
  if (!pending_.empty() && !(big_ && big_filled_ == big_len_))
    pump_pending();
  if (big_) {
    if (big_filled_ < big_len_)
      return {status::need_more, {}, static_cast<std::uint32_t>(big_len_), nullptr};
    result r{status::frame, std::string_view{big_.get(), big_len_},
             static_cast<std::uint32_t>(big_len_), std::move(big_)};
    big_.reset();
    big_len_ = big_filled_ = 0;
    return r;
  }
  auto avail = end_ - begin_;
  if (avail < 4)
    return {status::need_more, {}, 0, nullptr};
  auto len = get_length(buf_.get() + begin_);
  if (len == 0)
    return {status::empty_frame, {}, 0, nullptr};
  if (len > max_)
    return {status::too_large, {}, len, nullptr};
  if (avail >= 4 + std::size_t{len}) {
    std::string_view body{buf_.get() + begin_ + 4, len};
    begin_ += 4 + std::size_t{len};
    want_ = 0;
    return {status::frame, body, len, nullptr};
  }
  if (len > large_) {
    // A large frame: its own buffer, exactly its size, never zero-filled; what is buffered
    // already moves there and the rest is read straight into it.
    big_ = large_buffer(len);
    big_len_ = len;
    big_filled_ = avail - 4;
    std::memcpy(big_.get(), buf_.get() + begin_ + 4, big_filled_);
    begin_ = end_ = 0;
    want_ = 0;
    return {status::need_more, {}, len, nullptr};
  }
  want_ = 4 + std::size_t{len};
  return {status::need_more, {}, len, nullptr};
}

} // namespace pyvisor::protocol
