#include "protocol/frame_reader.hpp"

#include <algorithm>
#include <cstring>

namespace pyvisor::protocol {

namespace {

std::uint32_t get_length(const char* p) noexcept {
  auto b = reinterpret_cast<const unsigned char*>(p);
  return (std::uint32_t{b[0]} << 24) | (std::uint32_t{b[1]} << 16) | (std::uint32_t{b[2]} << 8) |
         std::uint32_t{b[3]};
}

} // namespace

frame_reader::frame_reader(std::size_t max_frame_bytes, std::size_t read_chunk)
  : max_(max_frame_bytes), chunk_(read_chunk) {
}

std::pair<char*, std::size_t> frame_reader::write_area() {
  // Room wanted after end_: the rest of the current frame if its length is known (and was
  // validated by next()), else one read chunk.
  if (begin_ == end_) {
    begin_ = end_ = 0;
    // Give back memory held for a large frame once it is consumed (the body views handed out
    // by next() are invalid from here on, as documented).
    if (buf_.size() > 4 * chunk_)
      std::vector<char>{}.swap(buf_);
  }
  std::size_t need = chunk_;
  if (want_ > 0 && begin_ + want_ > end_)
    need = std::max(need, begin_ + want_ - end_);
  if (buf_.size() - end_ < need) {
    // Compact first: move the unconsumed tail to the front.
    if (begin_ > 0) {
      std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);
      end_ -= begin_;
      begin_ = 0;
    }
    if (buf_.size() - end_ < need)
      buf_.resize(end_ + need);
  }
  return {buf_.data() + end_, buf_.size() - end_};
}

void frame_reader::feed(std::string_view data) {
  while (!data.empty()) {
    auto [p, n] = write_area();
    auto k = std::min(n, data.size());
    std::memcpy(p, data.data(), k);
    commit(k);
    data.remove_prefix(k);
  }
}

frame_reader::result frame_reader::next() {
  auto avail = end_ - begin_;
  if (avail < 4)
    return {status::need_more, {}, 0};
  auto len = get_length(buf_.data() + begin_);
  if (len == 0)
    return {status::empty_frame, {}, 0};
  if (len > max_)
    return {status::too_large, {}, len};
  if (avail < 4 + std::size_t{len}) {
    want_ = 4 + std::size_t{len};
    return {status::need_more, {}, len};
  }
  std::string_view body{buf_.data() + begin_ + 4, len};
  begin_ += 4 + std::size_t{len};
  want_ = 0;
  return {status::frame, body, len};
}

} // namespace pyvisor::protocol
