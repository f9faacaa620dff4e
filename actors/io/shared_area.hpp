#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "io/range_allocator.hpp"
#include "protocol/message.hpp"
#include "pyvisor/expected.hpp"

namespace pyvisor::io {

/// One process's shared memory for large bytes (docs/protocol.md, "Shared memory for large
/// bytes"): a memfd of 2 * bytes(), its first half host -> runner, its second half runner ->
/// host. The host owns the allocator of the first half, the runner the one of the second.
///
/// Host -> runner: a request's large bins (protocol::frame_out's slots) are copied into ranges
/// that stay untouched until the runner's response to that request arrives (release()).
/// Runner -> host: a reply's ext 6 becomes a bin that points into the mapping, kept alive by a
/// lease (an ext 8 an ext 7 whose first page, with its type byte and header, is the host's own
/// copy); when the last value holding it dies, its offset waits in `take_frees()` for the next
/// `shm_free` notification. The mapping lives as long as the area or any lease: values keep
/// their bytes after the process is gone.
///
/// Thread-safety: every function may be called from any thread.
class shared_area : public std::enable_shared_from_this<shared_area> {
public:
  /// Maps the memfd `fd` of 2 * `bytes` bytes (it is closed in every case).
  /// Freed ranges above `keep` bytes of either half go back to the system at once.
  static expected<std::shared_ptr<shared_area>> map(int fd, std::size_t bytes, std::size_t keep);
  ~shared_area();
  shared_area(const shared_area&) = delete;
  shared_area& operator=(const shared_area&) = delete;

  /// The size of each half.
  std::size_t bytes() const noexcept { return bytes_; }

  /// Copies the payloads of `f`'s slots into the host -> runner half and writes their
  /// references and the frame's length; the ranges belong to request `id` until release(id).
  /// False when they do not all fit: then `f` and the area are unchanged.
  bool place(std::uint64_t id, protocol::frame_out& f);

  /// The runner answered request `id`: its ranges are free.
  void release(std::uint64_t id);

  /// Turns the `{"ok": ext 6}` of a response into a bin that points into the runner -> host
  /// half and sets `m.lease`; with `copy`, into a copy in `m`'s zone (the range is free at
  /// once: the process cannot change the value afterwards). Returns what is wrong with the
  /// reference, if anything (a protocol violation: outside the half, or above `max_frame`
  /// with the frame's body).
  std::optional<std::string> resolve(protocol::message& m, msgpack::object& ok,
                                     std::size_t body_size, std::size_t max_frame, bool copy);

  /// Offsets of runner ranges no value holds any more (for `shm_free`); empty when none.
  std::vector<std::uint64_t> take_frees();

  /// Payloads placed / resolved so far.
  std::uint64_t placed() const noexcept { return placed_.load(std::memory_order_relaxed); }
  std::uint64_t resolved() const noexcept { return resolved_.load(std::memory_order_relaxed); }

private:
  struct lease;
  shared_area(char* base, char* replies, std::size_t bytes, std::size_t keep);
  void let_go(std::uint64_t offset, std::uint64_t length, bool own_page);
  void trim(std::uint64_t at, std::uint64_t length);  // offsets in the memfd

  char* base_;     // the memfd, shared: the host half is written here, trim() punches holes
  char* replies_;  // the runner half again, copy-on-write: replies are read from here
  std::size_t bytes_;
  std::size_t keep_;
  std::mutex mu_;
  range_allocator to_runner_;                                                   // guarded by mu_
  std::unordered_map<std::uint64_t, std::vector<std::uint64_t>> held_;          // guarded by mu_
  std::vector<std::uint64_t> frees_;                                            // guarded by mu_
  std::map<std::uint64_t, std::uint64_t> held_replies_;  // runner ranges values hold: start -> end; mu_
  std::atomic<bool> frees_pending_{false};
  std::atomic<std::uint64_t> placed_{0}, resolved_{0};
};

} // namespace pyvisor::io
