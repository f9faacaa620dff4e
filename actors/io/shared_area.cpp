#include "io/shared_area.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sys/mman.h>
#include <unistd.h>

namespace pyvisor::io {

namespace {

constexpr std::uint64_t page = 4096;

} // namespace

struct shared_area::lease {
  lease(std::shared_ptr<shared_area> a, std::uint64_t at, std::uint64_t n, bool own_page)
    : area(std::move(a)), offset(at), length(n), own_page(own_page) {}
  ~lease() { area->let_go(offset, length, own_page); }
  lease(const lease&) = delete;
  lease& operator=(const lease&) = delete;
  std::shared_ptr<shared_area> area;
  std::uint64_t offset, length;
  bool own_page;
};

expected<std::shared_ptr<shared_area>> shared_area::map(int fd, std::size_t bytes,
                                                        std::size_t keep) {
  void* p = bytes == 0 ? MAP_FAILED
                       : ::mmap(nullptr, 2 * bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  int e = errno;
  // The runner's half once more, copy-on-write: what replies are read from (see resolve).
  // Only a page per held array is ever written (copied): no reservation for the rest (under
  // vm.overcommit_memory = 2 the kernel charges it all the same).
  void* q = p == MAP_FAILED ? MAP_FAILED
                            : ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                                     MAP_PRIVATE | MAP_NORESERVE, fd, static_cast<off_t>(bytes));
  if (p != MAP_FAILED && q == MAP_FAILED) {
    e = errno;
    ::munmap(p, 2 * bytes);
    p = MAP_FAILED;
  }
  // The mappings keep the memory; the fd would only outlive the process (values may).
  ::close(fd);
  if (p == MAP_FAILED)
    return make_error(errc::spawn_failed, std::string{"cannot map the shared memory: "} +
                                            (bytes == 0 ? "empty" : std::strerror(e)));
  // The shared mapping's runner half stays writable only so that trim() may give its pages
  // back (MADV_REMOVE needs a writable shared mapping); the host never writes to it.
  return std::shared_ptr<shared_area>(
    new shared_area(static_cast<char*>(p), static_cast<char*>(q), bytes, keep));
}

shared_area::shared_area(char* base, char* replies, std::size_t bytes, std::size_t keep)
  : base_(base), replies_(replies), bytes_(bytes), keep_((keep + page - 1) / page * page),
    to_runner_(bytes, page) {
}

shared_area::~shared_area() {
  ::munmap(replies_, bytes_);
  ::munmap(base_, 2 * bytes_);
}

void shared_area::trim(std::uint64_t at, std::uint64_t length) {
  // Ranges are whole 4 KiB pages; on a kernel with larger pages a hole could take a
  // neighbour's data with it: no trimming there.
  static const bool small_pages = ::sysconf(_SC_PAGESIZE) == static_cast<long>(page);
  if (!small_pages)
    return;
  // Within a half: only what lies above `keep` in it.
  std::uint64_t half = at < bytes_ ? 0 : bytes_;
  std::uint64_t from = std::max<std::uint64_t>(at, half + keep_);
  std::uint64_t to = std::min<std::uint64_t>(at + length, half + bytes_);
  if (from < to)  // a hole in the memfd: its pages are freed for both processes
    ::madvise(base_ + from, to - from, MADV_REMOVE);
}

bool shared_area::place(std::uint64_t id, protocol::frame_out& f) {
  std::vector<std::uint64_t> taken;
  {
    std::lock_guard<std::mutex> g{mu_};
    for (const auto& s : f.slots) {
      // An ndarray's range starts with its type byte: the data is then as aligned there as
      // in the runner's replies (docs/protocol.md, "ndarray").
      auto at = to_runner_.take(s.prefix.size() + s.size + (s.ndarray ? 1 : 0));
      if (!at) {
        for (auto t : taken)
          to_runner_.give(t);
        return false;
      }
      taken.push_back(*at);
    }
    auto& held = held_[id];
    held.insert(held.end(), taken.begin(), taken.end());
  }
  // The copies run outside the lock: the ranges are this request's alone.
  for (std::size_t i = 0; i < f.slots.size(); ++i) {
    const auto& s = f.slots[i];
    auto n = s.prefix.size() + s.size;
    auto at = taken[i];
    if (s.ndarray)
      base_[at++] = protocol::ext_ndarray;
    std::memcpy(base_ + at, s.prefix.data(), s.prefix.size());
    std::memcpy(base_ + at + s.prefix.size(), s.data, s.size);
    protocol::put_shared_ref(f.bytes.data() + s.at, at, n,
                             s.ndarray ? protocol::ext_shared_ndarray : protocol::ext_shared_bytes);
  }
  f.slots.clear();
  placed_.fetch_add(taken.size(), std::memory_order_relaxed);
  return true;
}

void shared_area::release(std::uint64_t id) {
  std::vector<std::pair<std::uint64_t, std::uint64_t>> ranges;
  {
    std::lock_guard<std::mutex> g{mu_};
    auto i = held_.find(id);
    if (i == held_.end())
      return;
    for (auto at : i->second)
      ranges.emplace_back(at, to_runner_.size_of(at));
    held_.erase(i);
  }
  // Pages go back outside the lock (a large range takes a while), and before the ranges can
  // be taken again.
  for (auto [at, n] : ranges)
    trim(at, n);
  std::lock_guard<std::mutex> g{mu_};
  for (auto [at, n] : ranges)
    to_runner_.give(at);
}

std::optional<std::string> shared_area::resolve(protocol::message& m, msgpack::object& ok,
                                                std::size_t body_size, std::size_t max_frame,
                                                bool copy) {
  std::uint64_t offset = 0, length = 0;
  if (!protocol::get_shared_ref(ok, offset, length))
    return "a shared-memory reference that is not 16 bytes";
  if (offset > bytes_ || length > bytes_ - offset)
    return "a shared-memory reference outside the runner's area (offset " +
           std::to_string(offset) + ", length " + std::to_string(length) + ", area " +
           std::to_string(bytes_) + ")";
  // An ext 8 (ndarray) points past the type byte 7 at the start of its range.
  const bool array = ok.via.ext.type() == protocol::ext_shared_ndarray;
  char* at = replies_ + offset;
  if (array && (offset % page != 1 || at[-1] != protocol::ext_ndarray))
    return "a shared ndarray at offset " + std::to_string(offset) +
           " that does not follow a type byte 7 at the start of a page";
  const std::uint64_t range = array ? offset - 1 : offset;
  // The limit means what it means on the pipe: the reply with the reference replaced by the
  // bin or the ext 7 it stands for.
  std::uint64_t head = array ? (length < 256 ? 3 : length < 65536 ? 4 : 6)
                             : (length < 256 ? 2 : length < 65536 ? 3 : 5);
  std::uint64_t inline_size = body_size - protocol::shared_ref_size + head + length;
  if (inline_size > max_frame)
    return "a reply of " + std::to_string(inline_size) +
           " bytes through shared memory, above max_frame_bytes (" + std::to_string(max_frame) +
           ")";
  if (!copy) {
    // A range the host still holds (a value lives on it) cannot come again: its first page
    // may be the host's own copy, which the other value's end would drop.
    const std::uint64_t end = offset + std::max<std::uint64_t>(length, 1);
    std::lock_guard<std::mutex> g{mu_};
    auto next = held_replies_.lower_bound(range);
    bool overlaps = (next != held_replies_.end() && next->first < end) ||
                    (next != held_replies_.begin() && std::prev(next)->second > range);
    if (overlaps)
      return "a reply by shared memory at offset " + std::to_string(offset) +
             " while the host still holds a value there";
    held_replies_.emplace(range, end);
  }
  if (array) {
    ok.via.ext.size = static_cast<std::uint32_t>(length);  // type EXT already
  } else {
    ok.type = msgpack::type::BIN;
    ok.via.bin.size = static_cast<std::uint32_t>(length);
  }
  if (copy) {
    // An ndarray's copy keeps the layout of the range (type byte, then the payload), so its
    // data stays 64-byte aligned.
    auto* mine = static_cast<char*>(
        m.zone->allocate_align(length + (array ? 1 : 0) + 1, array ? 64 : 1));
    if (array)
      *mine++ = protocol::ext_ndarray;
    std::memcpy(mine, at, length);
    if (array)
      ok.via.ext.ptr = mine - 1;
    else
      ok.via.bin.ptr = mine;
    let_go(range, length + (array ? 1 : 0), false);
  } else if (array) {
    // The ext object's type byte, and the header after it, must not change under the host
    // (the type decides how the value is read): writing the byte gives the host its own copy
    // of that page (replies_ is copy-on-write), which the runner's writes no longer reach.
    // The rest of the data stays shared, like a bytes value's. let_go drops the copy.
    at[-1] = protocol::ext_ndarray;
    ok.via.ext.ptr = at - 1;
    m.lease = std::make_shared<lease>(shared_from_this(), range, length + 1, true);
  } else {
    ok.via.bin.ptr = at;
    m.lease = std::make_shared<lease>(shared_from_this(), range, length, false);
  }
  m.shared = true;
  resolved_.fetch_add(1, std::memory_order_relaxed);
  return std::nullopt;
}

void shared_area::let_go(std::uint64_t offset, std::uint64_t length, bool own_page) {
  // The host's copy of the range's first page goes (the next reply there reads the shared
  // page again).
  if (own_page)
    ::madvise(replies_ + offset, page, MADV_DONTNEED);
  {
    std::lock_guard<std::mutex> g{mu_};
    held_replies_.erase(offset);
  }
  // The runner reuses the range only once told (take_frees): its pages may go now. Its
  // ranges are whole pages.
  trim(bytes_ + offset, (length + page - 1) / page * page);
  std::lock_guard<std::mutex> g{mu_};
  frees_.push_back(offset);
  frees_pending_.store(true, std::memory_order_release);
}

std::vector<std::uint64_t> shared_area::take_frees() {
  if (!frees_pending_.load(std::memory_order_acquire))
    return {};
  std::lock_guard<std::mutex> g{mu_};
  frees_pending_.store(false, std::memory_order_relaxed);
  std::vector<std::uint64_t> out;
  out.swap(frees_);
  return out;
}

} // namespace pyvisor::io
