// `pyvisor eval [options] CODE`: runs CODE in a fresh interpreter and prints its result as
// one line of JSON. See cli/README.md.

#include <algorithm>
#include <array>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "gateway/json_value.hpp"
#include "pyvisor/config.hpp"
#include "pyvisor/errc.hpp"
#include "pyvisor/error.hpp"
#include "pyvisor/interpreter.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/runtime.hpp"
#include "pyvisor/vars.hpp"
#include "signal_watcher.hpp"

namespace pyvisor::cli {
namespace {

using namespace std::chrono_literals;

/// Nesting allowed in a --var value. A var travels at depth 4 of an `init`/`eval` frame
/// ([kind, id, op, payload] -> payload map -> "vars" map -> value), and both ends reject
/// bodies deeper than 128 (docs/protocol.md): so at most 125 levels of JSON nesting.
constexpr std::size_t max_var_depth = default_max_json_depth - 3;

constexpr std::string_view eval_description =
    R"(Starts a Python interpreter, runs CODE in it and prints the value CODE returns as one line
of JSON on stdout. CODE is a block of Python statements: end it with `return EXPR` to
produce a result (without a return the result is null); top-level `await` works.
CODE '-' reads the code from standard input.)";

constexpr std::string_view eval_footer =
    R"(Python's own stdout and stderr output (print, warnings) goes to stderr, one prefixed line
per line. JSON rendering of results (tuples, sets, bytes, big ints, ...): see README.

exit status:
  0      success
  1      error: the code raised or did not compile, timeout, the interpreter failed, ...
         ("error: <code>: <message>" and the Python traceback on stderr, or JSON with --json)
  2      usage error
  128+N  interrupted by signal N (SIGINT: 130))";

/// What the command line gave (strings; checked by prepare()).
struct eval_args {
  std::string python = "python3";
  std::string init_script;
  std::vector<std::string> vars;  ///< NAME=JSON
  std::string timeout;
  bool json = false;
  std::string code;
};

/// The checked arguments.
struct eval_request {
  std::string python;
  std::string init_script;
  std::vector<std::pair<std::string, std::string>> vars;  ///< name, msgpack bytes
  std::optional<std::chrono::milliseconds> timeout;
  bool json = false;
  std::string code;
  bool code_from_stdin = false;
};

bool is_python_keyword(std::string_view s) {
  static constexpr std::array<std::string_view, 35> keywords = {
      "False",  "None",     "True",    "and",    "as",       "assert", "async",
      "await",  "break",    "class",   "continue", "def",    "del",    "elif",
      "else",   "except",   "finally", "for",    "from",     "global", "if",
      "import", "in",       "is",      "lambda", "nonlocal", "not",    "or",
      "pass",   "raise",    "return",  "try",    "while",    "with",   "yield"};
  return std::find(keywords.begin(), keywords.end(), s) != keywords.end();
}

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

std::pair<std::string, std::string> parse_var(std::string_view spec) {
  const auto eq = spec.find('=');
  if (eq == std::string_view::npos) {
    throw usage_error{"--var needs NAME=JSON, got '" + std::string(spec) + "'"};
  }
  const std::string name(spec.substr(0, eq));
  if (!is_identifier(name)) {
    throw usage_error{"--var: '" + name + "' is not a valid Python variable name"};
  }
  try {
    return {name, json_to_msgpack(spec.substr(eq + 1), max_var_depth)};
  } catch (const json_error& e) {
    throw usage_error{"--var " + name + ": invalid JSON: " + e.what()};
  }
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

bool read_stdin(std::string& out) {
  char buf[65536];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, stdin);
    out.append(buf, n);
    if (n < sizeof buf) return std::ferror(stdin) == 0;
  }
}

eval_request prepare(const eval_args& a) {
  eval_request r;
  if (a.python.empty()) throw usage_error{"--python needs a non-empty EXE"};
  r.python = a.python;
  if (!is_valid_utf8(a.init_script)) {
    throw usage_error{"--init-script: the code is not valid UTF-8"};
  }
  r.init_script = a.init_script;
  std::set<std::string> names;
  for (const std::string& spec : a.vars) {
    auto v = parse_var(spec);
    if (!names.insert(v.first).second) throw usage_error{"--var " + v.first + " given more than once"};
    r.vars.push_back(std::move(v));
  }
  if (!a.timeout.empty()) {
    const auto t = parse_timeout(a.timeout);
    if (t != pyvisor::forever) r.timeout = t;
  }
  r.json = a.json;
  r.code_from_stdin = a.code == "-";
  if (r.code_from_stdin) {
    if (!read_stdin(r.code)) {
      throw std::system_error(errno, std::generic_category(), "cannot read the code from stdin");
    }
  } else {
    r.code = a.code;
  }
  if (!is_valid_utf8(r.code)) throw usage_error{"CODE is not valid UTF-8"};
  return r;
}

void print_error(const pyvisor::error& e, bool as_json) {
  if (as_json) {
    json err = json::object();
    err["code"] = std::string(pyvisor::to_string(e.code));
    err["type"] = e.python_type.empty() ? json(nullptr) : json(e.python_type);
    err["message"] = e.message;
    err["traceback"] = json::array();
    for (const std::string& line : e.traceback) err["traceback"].push_back(line);
    json doc = json::object();
    doc["error"] = std::move(err);
    (void)write_stdout(dump_json(doc) + "\n");
    return;
  }
  std::string out = "error: ";
  out += pyvisor::to_string(e.code);
  out += ": ";
  out += e.message;
  out += '\n';
  for (const std::string& line : e.traceback) {
    out += line;
    if (line.empty() || line.back() != '\n') out += '\n';
  }
  write_all(stderr, out);
  std::fflush(stderr);
}

int run_eval(const eval_request& a) {
  pyvisor::interpreter_options opts;
  opts.python = a.python;
  opts.init_script.code = a.init_script;
  pyvisor::vars vars;
  for (const auto& [name, bytes] : a.vars) {
    // The CLI's own converter made these bytes; the check cannot fail for them.
    auto packed = pyvisor::arg::from_msgpack(bytes);
    if (!packed) throw usage_error{"--var " + name + ": " + packed.error().to_string()};
    opts.init_script.vars.push_back(pyvisor::var{name, *packed});
    vars.push_back(pyvisor::var{name, *packed});
  }
  opts.default_timeout = pyvisor::forever;  // no limit unless --timeout
  // Returns at once, so that a signal can stop the interpreter while it starts.
  opts.sync_start = false;
  // A CLI should not hang around: on a timeout or a signal, give the runner 1 s to stop, then
  // SIGTERM, then 1 s later SIGKILL.
  opts.shutdown.graceful = 1000ms;
  opts.shutdown.terminate = 1000ms;

  pyvisor::eval_options eo;
  eo.file = a.code_from_stdin ? "<stdin>" : "<string>";
  if (a.timeout) eo.timeout = *a.timeout;

  const auto ready_bound = opts.init_script_timeout + 30s;

  signal_watcher watcher;
  std::optional<pyvisor::error> failure;
  std::string result_json;
  {
    pyvisor::runtime rt;
    struct joiner {
      signal_watcher& w;
      ~joiner() { w.join(); }  // before the runtime is destroyed
    } join_watcher{watcher};

    auto spawned = rt.spawn_interpreter(std::move(opts));
    if (!spawned) {
      failure = spawned.error();
    } else {
      pyvisor::interpreter interp = *spawned;
      if (watcher.watch(interp)) {
        // This bound only backs up init_script_timeout (which gives init_timeout).
        auto ready = interp.wait_ready(ready_bound);
        if (!ready) {
          failure = ready.error();
        } else if (watcher.signal() == 0) {
          auto result = interp.eval(a.code, vars, eo);
          if (!result) {
            failure = result.error();
          } else {
            // plain(): tuple/set payloads already decoded once, under the frame limits.
            try {
              result_json = to_json(result->plain());
            } catch (const std::exception& e) {
              failure = pyvisor::make_error(pyvisor::errc::unserializable,
                                            std::string("cannot render the result: ") + e.what());
            }
          }
        }
      }
      // Stop now (not in the runtime's destructor) so that the interpreter's last output
      // lines are logged before the result is printed.
      (void)interp.stop();
    }
  }

  if (const int sig = watcher.signal(); sig != 0) {
    print_error(pyvisor::make_error(pyvisor::errc::cancelled,
                                    std::string("interrupted by ") + signal_name(sig)),
                a.json);
    return 128 + sig;
  }
  if (failure) {
    print_error(*failure, a.json);
    return exit_error;
  }
  if (!write_stdout(result_json + "\n")) {
    std::fprintf(stderr, "pyvisor: cannot write the result to stdout: %s\n",
                 std::strerror(errno));
    return exit_error;
  }
  return exit_ok;
}

} // namespace

command_runner add_eval_command(CLI::App& app) {
  auto args = std::make_shared<eval_args>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "run Python code in a fresh interpreter and print its result as JSON");
  cmd->footer(std::string(eval_description) + "\n\n" + std::string(eval_footer));
  cmd->add_option("--python", args->python,
                  "Python executable: a name looked up in PATH or a path (default: python3)")
      ->type_name("EXE")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--init-script", args->init_script,
                  "code run once before CODE, in the namespace CODE starts from")
      ->type_name("CODE")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--var", args->vars,
                  "bind the Python variable NAME to a JSON value, for the init script and for "
                  "CODE (repeatable)")
      ->type_name("NAME=JSON")
      ->allow_extra_args(false);
  cmd->add_option("--timeout", args->timeout,
                  "give up on CODE after DURATION: a number and a unit, e.g. 250ms, 1.5s, 5s, "
                  "1m, 1h (default: no limit)")
      ->type_name("DURATION")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_flag("--json", args->json,
                "report errors as one JSON line on stdout: "
                "{\"error\": {\"code\", \"type\", \"message\", \"traceback\"}}")
      ->disable_flag_override();
  cmd->add_option("CODE", args->code, "Python code, or '-' to read it from stdin")->required();
  return [args] { return run_eval(prepare(*args)); };
}

} // namespace pyvisor::cli
