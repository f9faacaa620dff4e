// The checked inputs of `pyvisor eval` (eval_input.hpp).

#include "eval_input.hpp"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <system_error>

#include "pyvisor/config.hpp"

namespace pyvisor::cli {
namespace {

using namespace std::chrono_literals;

bool is_python_keyword(std::string_view s) {
  static constexpr std::array<std::string_view, 35> keywords = {
      "False",  "None",     "True",    "and",    "as",       "assert", "async",
      "await",  "break",    "class",   "continue", "def",    "del",    "elif",
      "else",   "except",   "finally", "for",    "from",     "global", "if",
      "import", "in",       "is",      "lambda", "nonlocal", "not",    "or",
      "pass",   "raise",    "return",  "try",    "while",    "with",   "yield"};
  return std::find(keywords.begin(), keywords.end(), s) != keywords.end();
}

/// The code of -f FILE; a file that cannot be read is a usage error (as for `python3 FILE`).
std::string read_code_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  std::string code;
  const bool ok = f != nullptr && read_all(f, code);
  const int err = errno;
  if (f != nullptr) std::fclose(f);
  if (!ok) throw usage_error{"-f: cannot read '" + path + "': " + std::strerror(err)};
  return code;
}

} // namespace

/// A Python identifier: ASCII letters, digits and '_' (not first: a digit), plus any
/// non-ASCII UTF-8 (Python checks the Unicode rules itself), and not a keyword.
bool is_identifier(std::string_view s) {
  if (s.empty() || !is_valid_utf8(s) || is_python_keyword(s)) return false;
  if (s[0] >= '0' && s[0] <= '9') return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u >= 0x80 || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           (c >= '0' && c <= '9');
  });
}

parsed_var parse_var(std::string_view spec) {
  const auto eq = spec.find('=');
  if (eq == std::string_view::npos) {
    throw usage_error{"--var needs NAME=JSON, got '" + std::string(spec) + "'"};
  }
  parsed_var v;
  v.name = std::string(spec.substr(0, eq));
  if (!is_identifier(v.name)) {
    throw usage_error{"--var: '" + v.name + "' is not a valid Python variable name"};
  }
  if (v.name == path_var) throw usage_error{"--var: the name " + v.name + " is reserved"};
  try {
    v.doc = parse_json(spec.substr(eq + 1), max_var_depth);
    v.msgpack = document_to_msgpack(v.doc);
  } catch (const json_error& e) {
    // A syntax error has a byte offset; a malformed tag (docs/json.md) says where it is.
    throw usage_error{"--var " + v.name + ": " + (e.has_offset() ? "invalid JSON: " : "") +
                      e.what()};
  }
  return v;
}

std::vector<parsed_var> parse_vars(const std::vector<std::string>& specs) {
  std::vector<parsed_var> out;
  std::set<std::string> names;
  for (const std::string& spec : specs) {
    parsed_var v = parse_var(spec);
    if (!names.insert(v.name).second) throw usage_error{"--var " + v.name + " given more than once"};
    out.push_back(std::move(v));
  }
  return out;
}

std::chrono::milliseconds parse_timeout(const std::string& text) {
  const auto d = pyvisor::parse_duration(text);
  if (!d || *d < 1ms) {
    throw usage_error{"--timeout: invalid DURATION '" + text +
                      "' (expected a whole number of milliseconds with a unit, e.g. 250ms, "
                      "1.5s, 5s, 1m, 1h, or forever; at least 1ms)"};
  }
  return *d;
}

bool read_all(std::FILE* f, std::string& out) {
  char buf[65536];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, f);
    out.append(buf, n);
    if (n < sizeof buf) return std::ferror(f) == 0;
  }
}

eval_code read_eval_code(const code_args& a) {
  if (a.code_given && a.file_given) throw usage_error{"CODE and -f FILE are mutually exclusive"};
  if (!a.code_given && !a.file_given) throw usage_error{"CODE is required (or -f FILE)"};
  eval_code r;
  if (a.file_given) {
    if (a.file.empty()) throw usage_error{"-f needs a non-empty FILE"};
    r.code = read_code_file(a.file);
    r.file = a.file;
    if (!is_valid_utf8(r.code)) throw usage_error{"FILE '" + a.file + "' is not valid UTF-8"};
    return r;
  }
  if (a.code == "-") {
    if (!read_all(stdin, r.code)) {
      throw std::system_error(errno, std::generic_category(), "cannot read the code from stdin");
    }
    r.file = "<stdin>";
  } else {
    r.code = a.code;
    r.file = "<string>";
  }
  if (!is_valid_utf8(r.code)) throw usage_error{"CODE is not valid UTF-8"};
  return r;
}

} // namespace pyvisor::cli
