#include "pyvisor/log_record.hpp"

#include <cstdio>
#include <string>

namespace pyvisor {

std::string_view to_string(log_source s) noexcept {
  switch (s) {
    case log_source::python_stdout: return "stdout";
    case log_source::python_stderr: return "stderr";
    case log_source::runtime: return "runtime";
    case log_source::python_logging: return "logging";
  }
  return "unknown";
}

void stderr_log_sink(const log_record& r) {
  std::string s;
  s.reserve(r.label.size() + r.line.size() + r.logger.size() + r.exception.size() + 48);
  s += '[';
  s += r.label;
  s += ' ';
  s += std::to_string(r.pid);
  s += ' ';
  s += to_string(r.source);
  if (r.source == log_source::python_logging) {
    s += ' ';
    if (r.level_name.empty())
      s += std::to_string(r.level);
    else
      s += r.level_name;
    if (!r.logger.empty()) {
      s += ' ';
      s += r.logger;
    }
  }
  if (r.request_id != 0) {
    s += " #";
    s += std::to_string(r.request_id);
  }
  s += "] ";
  s += r.line;
  s += '\n';
  if (!r.exception.empty()) {
    s += r.exception;
    s += '\n';
  }
  // One fwrite per line keeps lines whole when several threads log.
  std::fwrite(s.data(), 1, s.size(), stderr);
}

} // namespace pyvisor
