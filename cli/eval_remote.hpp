#pragma once

// `pyvisor eval --pool NAME | --session ID` and `pyvisor session eval ID`: the code runs in
// the daemon's pool or session (POST /v1/pools/NAME/eval, /v1/sessions/ID/eval; docs/http.md)
// and prints like the local eval (eval_output.hpp).

#include <string>

#include <CLI/CLI.hpp>

#include "client.hpp"
#include "eval_input.hpp"

namespace pyvisor::cli {

struct remote_eval_args {
  connect_args conn;
  std::string pool;     ///< --pool (or)
  std::string session;  ///< --session
  std::string key;      ///< --key (pools only)
  code_args code;
};

/// Runs it; returns the exit status (throws usage_error).
int run_remote_eval(const remote_eval_args& a);

/// The code's options of `pyvisor session eval`: --var, --timeout, --json, --raw, -f FILE and
/// CODE (add_remote_code_options).
struct code_options {
  CLI::Option* file = nullptr;
  CLI::Option* code = nullptr;
  /// Sets a.code_given / a.file_given from what was parsed.
  void note_given(code_args& a) const {
    a.file_given = file->count() > 0;
    a.code_given = code->count() > 0;
  }
};
code_options add_remote_code_options(CLI::App* cmd, code_args& a);

} // namespace pyvisor::cli
