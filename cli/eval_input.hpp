#pragma once

// What `pyvisor eval`'s command line says about the code and its inputs, checked: --var
// NAME=JSON values, --timeout DURATION, and the code itself (CODE, -f FILE or '-' for stdin).
// Shared by the local eval (eval_command.cpp) and the remote one (eval_remote.cpp,
// `pyvisor session eval`). Problems are usage errors (exit 2).

#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "commands.hpp"
#include "gateway/json_value.hpp"

namespace pyvisor::cli {

/// Nesting allowed in a --var value. A var travels at depth 4 of an `init`/`eval` frame
/// ([kind, id, op, payload] -> payload map -> "vars" map -> value), and both ends reject
/// bodies deeper than 128 (docs/protocol.md): so at most 125 levels of JSON nesting.
inline constexpr std::size_t max_var_depth = default_max_json_depth - 3;

/// The local eval's init script variable holding the --path directories (reserved for --var).
inline constexpr std::string_view path_var = "__pyvisor_path__";

/// The code-related arguments as given (strings; checked by the functions below).
struct code_args {
  std::vector<std::string> vars;  ///< NAME=JSON
  std::string timeout;
  bool json = false;
  bool raw = false;
  std::string code;
  bool code_given = false;
  std::string file;
  bool file_given = false;
};

/// A checked --var: its name, its JSON document (tags as written) and the msgpack bytes.
struct parsed_var {
  std::string name;
  json doc;
  std::string msgpack;
};

/// Whether `s` can name a Python variable: an identifier that is not a keyword.
bool is_identifier(std::string_view s);

/// One NAME=JSON (throws usage_error).
parsed_var parse_var(std::string_view spec);

/// Every --var, each NAME once (throws usage_error).
std::vector<parsed_var> parse_vars(const std::vector<std::string>& specs);

/// A --timeout DURATION: at least 1ms, or pyvisor::forever (throws usage_error).
std::chrono::milliseconds parse_timeout(const std::string& text);

/// Reads the whole of `f`; false on a read error.
bool read_all(std::FILE* f, std::string& out);

/// The code to run and the file name tracebacks show.
struct eval_code {
  std::string code;
  std::string file;  ///< "<string>", "<stdin>" or FILE as given
};

/// CODE, -f FILE or '-' (stdin): exactly one, valid UTF-8 (throws usage_error; a read error on
/// stdin throws std::system_error).
eval_code read_eval_code(const code_args& a);

} // namespace pyvisor::cli
