#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string_view>

namespace pyvisor {

/// Where a log line came from.
enum class log_source : std::uint8_t {
  python_stdout,  ///< A line the Python process wrote to stdout (print()).
  python_stderr,  ///< A line the Python process wrote to stderr (warnings, tracebacks, ...).
  runtime,        ///< pyvisor itself (lifecycle events, killed processes, ...).
  /// A record of Python's `logging` (interpreter_options::forward_logging): the fields below
  /// `request_id` are set, `line` is the formatted message.
  python_logging,
};

/// "stdout", "stderr", "runtime" or "logging".
std::string_view to_string(log_source s) noexcept;

/// One log line. The views are valid only during the sink call.
///
/// Pool workers are labelled "<pool name>-w<N>" (N counts the pool's workers from 1 and is
/// never reused), so `label` names the pool and the worker.
struct log_record {
  std::string_view label;  ///< The interpreter's label (options.label or "python-<pid>").
  int pid = 0;             ///< The interpreter's OS pid (0 before spawn).
  log_source source = log_source::runtime;
  /// Without the trailing newline. python_logging: `record.getMessage()` (it may hold
  /// newlines; the traceback is in `exception`).
  std::string_view line;
  /// The request that printed (or logged) it, also from the tasks it started; 0 if unknown
  /// (no request, another thread).
  std::uint64_t request_id = 0;

  // python_logging only (empty / zero for the other sources):
  int level = 0;                ///< Python's number: 10 DEBUG, 20 INFO, 30 WARNING, 40 ERROR, 50 CRITICAL.
  std::string_view level_name;  ///< `record.levelname` ("WARNING", or a custom level's name).
  std::string_view logger;      ///< The logger's name ("root" for the root logger).
  /// The formatted `exc_info` traceback (then `stack_info`), without the trailing newline;
  /// empty when the record has none.
  std::string_view exception;
  /// When Python created the record (`record.created`); the epoch when unknown.
  std::chrono::system_clock::time_point created{};
};

/// Receives log lines. Called from pyvisor's I/O thread or an actor thread, never concurrently
/// with itself; must not block for long.
using log_sink = std::function<void(const log_record&)>;

/// The default sink: writes "[label pid source] line" (with " #id" after the source when the
/// line belongs to a request) to the host's stderr. Logging records:
/// "[label pid logging LEVEL logger #id] message", then the exception text on its own lines.
void stderr_log_sink(const log_record& r);

} // namespace pyvisor
