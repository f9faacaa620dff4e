// The output and exit status of `pyvisor eval` (eval_output.hpp).

#include "eval_output.hpp"

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <string_view>

namespace pyvisor::cli {
namespace {

/// A string member of an error object, or `fallback`.
std::string member(const json& err, const char* name, const char* fallback) {
  const auto i = err.find(name);
  return i != err.end() && i->is_string() ? i->get<std::string>() : std::string(fallback);
}

} // namespace

std::optional<int> system_exit_status(const std::string& message) {
  if (message.empty() || message == "None" || message == "False") return 0;
  if (message == "True") return 1;
  const bool negative = message.starts_with('-');
  const std::string_view digits = std::string_view(message).substr(negative ? 1 : 0);
  const auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  if (digits.empty() || !std::all_of(digits.begin(), digits.end(), is_digit)) return std::nullopt;
  int n = 0;
  if (std::from_chars(digits.data(), digits.data() + digits.size(), n).ec != std::errc{}) {
    return 1;  // beyond int
  }
  if (n == 0) return 0;
  return !negative && n <= 125 ? n : 1;
}

void print_error(const json& error_doc, bool as_json) {
  if (as_json) {
    (void)write_stdout(dump_json(error_doc) + "\n");
    return;
  }
  static const json empty = json::object();
  const auto e = error_doc.find("error");
  const json& err = e != error_doc.end() && e->is_object() ? *e : empty;
  std::string out = "error: " + member(err, "code", "unknown") + ": " + member(err, "message", "");
  out += '\n';
  if (const auto tb = err.find("traceback"); tb != err.end() && tb->is_array()) {
    for (const json& line : *tb) {
      if (!line.is_string()) continue;
      const std::string& text = line.get_ref<const std::string&>();
      out += text;
      if (text.empty() || text.back() != '\n') out += '\n';
    }
  }
  write_all(stderr, out);
  std::fflush(stderr);
}

int finish_eval(const json* error_doc, const std::string& result_line, bool as_json) {
  std::string result = result_line;
  if (error_doc != nullptr) {
    const auto e = error_doc->find("error");
    const bool system_exit = e != error_doc->end() && e->is_object() &&
                             member(*e, "code", "") == "python_exception" &&
                             member(*e, "type", "") == "SystemExit";
    if (!system_exit) {
      print_error(*error_doc, as_json);
      return exit_error;
    }
    // As `python3 FILE` exits: sys.exit() is success, sys.exit(N) exits N, sys.exit("msg")
    // prints msg and exits 1 (no traceback). --json reports the exit as its error line.
    const std::string message = member(*e, "message", "");
    const auto status = system_exit_status(message);
    if (!status || *status != 0) {
      if (as_json) {
        print_error(*error_doc, true);
      } else if (!status) {
        write_all(stderr, message + "\n");
      }
      return status.value_or(exit_error);
    }
    result = "null";
  }
  if (!write_stdout(result + "\n")) {
    std::fprintf(stderr, "pyvisor: cannot write the result to stdout: %s\n",
                 std::strerror(errno));
    return exit_error;
  }
  return exit_ok;
}

} // namespace pyvisor::cli
