#pragma once

#include <cstdint>
#include <functional>
#include <string_view>

namespace pyvisor {

/// Where a log line came from.
enum class log_source : std::uint8_t {
  python_stdout,  ///< A line the Python process wrote to stdout (print()).
  python_stderr,  ///< A line the Python process wrote to stderr (warnings, tracebacks, ...).
  runtime,        ///< pyvisor itself (lifecycle events, killed processes, ...).
};

/// "stdout", "stderr" or "runtime".
std::string_view to_string(log_source s) noexcept;

/// One log line. The views are valid only during the sink call.
struct log_record {
  std::string_view label;  ///< The interpreter's label (options.label or "python-<pid>").
  int pid = 0;             ///< The interpreter's OS pid (0 before spawn).
  log_source source = log_source::runtime;
  std::string_view line;   ///< Without the trailing newline.
  std::uint64_t request_id = 0;  ///< The request that printed it (print() in an eval); 0 if unknown.
};

/// Receives log lines. Called from pyvisor's I/O thread or an actor thread, never concurrently
/// with itself; must not block for long.
using log_sink = std::function<void(const log_record&)>;

/// The default sink: writes "[label pid source] line" (with " #id" after the source when the
/// line belongs to a request) to the host's stderr.
void stderr_log_sink(const log_record& r);

} // namespace pyvisor
