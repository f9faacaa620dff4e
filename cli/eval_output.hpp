#pragma once

// What `pyvisor eval` prints and the status it exits with, for the local eval and the remote
// one alike (README "Exit status and errors"): the result as one line of JSON on stdout, an
// error object as `error: <code>: <message>` plus its traceback on stderr (or the object as one
// JSON line on stdout with --json), and SystemExit as the exit status.

#include <optional>
#include <string>

#include "commands.hpp"
#include "gateway/json_value.hpp"

namespace pyvisor::cli {

/// SystemExit's exit status, from the argument as the runner reports it (its str()): None
/// (sys.exit(), "" or "None") and 0 -> 0; an integer N -> N when in 1..125, else 1 (bool:
/// False 0, True 1). nullopt for anything else, a message (status 1, the message on stderr).
/// The runner sends str(arg), so SystemExit("3") reads as SystemExit(3) (see README).
std::optional<int> system_exit_status(const std::string& message);

/// Prints an error document {"error": {"code", "type", "message", "traceback"}} (the gateway's
/// and `eval --json`'s shape): with `as_json` as one line on stdout, otherwise as
/// "error: <code>: <message>" and the traceback lines on stderr. Missing or mistyped members
/// (an answer from something that is not a pyvisor daemon) print as "unknown"/empty.
void print_error(const json& error_doc, bool as_json);

/// Ends an eval: `error_doc` (an error document, or nullptr when it succeeded) handled as
/// the README says (SystemExit statuses included), else `result_line` printed on stdout.
/// Returns the exit status.
int finish_eval(const json* error_doc, const std::string& result_line, bool as_json);

} // namespace pyvisor::cli
