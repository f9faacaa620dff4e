#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace pyvisor::io {

/// Cuts a byte stream (a child's stdout or stderr) into lines. Pure: no I/O.
/// A line is reported without its "\n" (and without a trailing "\r"); a line longer than
/// `max_line` bytes is reported in pieces of exactly `max_line` bytes, so one endless line
/// never holds more than that in memory.
class line_splitter {
public:
  using sink = std::function<void(std::string_view)>;

  explicit line_splitter(std::size_t max_line = 64 * 1024) : max_(max_line) {}

  /// Feeds bytes; every complete line goes to `out`.
  void feed(std::string_view bytes, const sink& out);

  /// End of stream: a last unterminated line goes to `out`.
  void finish(const sink& out);

  /// Cuts `line` into pieces of at most `max` bytes (for lines that arrive whole, e.g. the
  /// runner's log frames) and strips a trailing "\r".
  static void emit_capped(std::string_view line, std::size_t max, const sink& out);

private:
  std::size_t max_;
  std::string partial_;
};

} // namespace pyvisor::io
