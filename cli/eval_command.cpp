// `pyvisor eval [options] (CODE | -f FILE)`: runs the code in a fresh interpreter and prints
// its result as one line of JSON (docs/json.md). See cli/README.md.

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
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

/// The init script's variable holding the --path directories (reserved for --var).
constexpr std::string_view path_var = "__pyvisor_path__";

constexpr std::string_view eval_description =
    R"(Starts a Python interpreter, runs CODE in it and prints the value CODE returns as one line
of JSON on stdout. CODE is a block of Python statements: end it with `return EXPR` to
produce a result (without a return the result is null); top-level `await` works.
CODE '-' reads the code from standard input; -f FILE reads it from FILE.)";

constexpr std::string_view eval_footer =
    R"(Python's own stdout and stderr output (print, warnings) goes to stderr, one prefixed line
per line. Results and --var values use pyvisor's lossless JSON rendering: tuples, sets,
bytes, big ints, NaN, dicts with non-str keys as {"$tuple": [...]}, ... (docs/json.md).

exit status:
  0      success; also SystemExit(0), SystemExit(None), sys.exit() (the result is null)
  1      error: the code raised or did not compile, timeout, the interpreter failed, ...
         ("error: <code>: <message>" and the Python traceback on stderr, or JSON with --json);
         SystemExit("message") (the message on stderr)
  N      SystemExit(N) for N in 1..125 (other integers: 1)
  2      usage error
  128+N  interrupted by signal N (SIGINT: 130))";

/// What the command line gave (strings; checked by prepare()).
struct eval_args {
  std::string python = "python3";
  std::string init_script;
  std::vector<std::string> vars;  ///< NAME=JSON
  std::string timeout;
  bool json = false;
  bool raw = false;
  std::string cwd;
  std::vector<std::string> paths;
  std::string code;
  bool code_given = false;
  std::string file;
  bool file_given = false;
};

/// The checked arguments.
struct eval_request {
  std::string python;
  std::string init_script;
  std::vector<std::pair<std::string, std::string>> vars;  ///< name, msgpack bytes
  std::optional<std::chrono::milliseconds> timeout;
  bool json = false;
  bool raw = false;
  std::string cwd;                 ///< the interpreter's working directory; empty: ours
  std::vector<std::string> paths;  ///< absolute, prepended to sys.path
  std::string code;
  std::string code_file;  ///< the file name tracebacks show
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
  if (name == path_var) throw usage_error{"--var: the name " + name + " is reserved"};
  try {
    return {name, json_to_msgpack(spec.substr(eq + 1), max_var_depth)};
  } catch (const json_error& e) {
    // A syntax error has a byte offset; a malformed tag (docs/json.md) says where it is.
    throw usage_error{"--var " + name + ": " + (e.has_offset() ? "invalid JSON: " : "") +
                      e.what()};
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

bool read_all(std::FILE* f, std::string& out) {
  char buf[65536];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, f);
    out.append(buf, n);
    if (n < sizeof buf) return std::ferror(f) == 0;
  }
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

/// --path DIR: must exist (a directory, or a zip file), made absolute so that --cwd does not
/// change what it means; it reaches Python as a str.
std::string checked_path(const std::string& dir) {
  std::error_code ec;
  if (dir.empty() || !std::filesystem::exists(dir, ec)) {
    throw usage_error{"--path: '" + dir + "' does not exist"};
  }
  if (!is_valid_utf8(dir)) throw usage_error{"--path: '" + dir + "' is not valid UTF-8"};
  return std::filesystem::absolute(dir).lexically_normal().string();
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
  r.raw = a.raw;
  if (!a.cwd.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(a.cwd, ec)) {
      throw usage_error{"--cwd: '" + a.cwd + "' is not a directory"};
    }
    r.cwd = a.cwd;
  }
  for (const std::string& dir : a.paths) r.paths.push_back(checked_path(dir));
  if (a.code_given && a.file_given) throw usage_error{"CODE and -f FILE are mutually exclusive"};
  if (!a.code_given && !a.file_given) throw usage_error{"CODE is required (or -f FILE)"};
  if (a.file_given) {
    if (a.file.empty()) throw usage_error{"-f needs a non-empty FILE"};
    r.code = read_code_file(a.file);
    // Tracebacks name the file as given; relative to --cwd it would be another file, so then
    // it is made absolute (the interpreter reads the source lines it shows from it).
    const std::filesystem::path p(a.file);
    r.code_file = r.cwd.empty() || p.is_absolute() ? a.file : std::filesystem::absolute(p).string();
    if (!is_valid_utf8(r.code)) throw usage_error{"FILE '" + a.file + "' is not valid UTF-8"};
    return r;
  }
  if (a.code == "-") {
    if (!read_all(stdin, r.code)) {
      throw std::system_error(errno, std::generic_category(), "cannot read the code from stdin");
    }
    r.code_file = "<stdin>";
  } else {
    r.code = a.code;
    r.code_file = "<string>";
  }
  if (!is_valid_utf8(r.code)) throw usage_error{"CODE is not valid UTF-8"};
  return r;
}

/// SystemExit's exit status, from the argument as the runner reports it (its str()): None
/// (sys.exit(), "" or "None") and 0 -> 0; an integer N -> N when in 1..125, else 1 (bool:
/// False 0, True 1). nullopt for anything else, a message (status 1, the message on stderr).
/// The runner sends str(arg), so SystemExit("3") reads as SystemExit(3) (see README).
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
  opts.cwd = a.cwd;
  opts.init_script.code = a.init_script;
  if (!a.paths.empty()) {
    // One line in front of the init script, so that it imports from the directories too; the
    // directories travel as a variable (never as code), which the line then deletes.
    opts.init_script.code = "import sys as __pyvisor_sys__; __pyvisor_sys__.path[0:0] = " +
                            std::string(path_var) + "; del __pyvisor_sys__, " +
                            std::string(path_var) + "\n" + a.init_script;
    opts.init_script.vars.push_back(pyvisor::var{std::string(path_var), pyvisor::arg(a.paths)});
  }
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
  eo.file = a.code_file;
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
            // The object as received (tuples and sets as such: docs/json.md); with --raw a
            // str as it is.
            try {
              const msgpack::object& obj = result->object();
              result_json = a.raw && obj.type == msgpack::type::STR
                                ? std::string(obj.via.str.ptr, obj.via.str.size)
                                : to_json(*result);
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
  if (failure && failure->code == pyvisor::errc::python_exception &&
      failure->python_type == "SystemExit") {
    // As `python3 FILE` exits: sys.exit() is success, sys.exit(N) exits N, sys.exit("msg")
    // prints msg and exits 1 (no traceback). --json reports the exit as its error line.
    const auto status = system_exit_status(failure->message);
    if (status && *status == 0) {
      failure.reset();
      result_json = "null";
    } else {
      if (a.json) {
        print_error(*failure, true);
      } else if (!status) {
        write_all(stderr, failure->message + "\n");
      }
      return status.value_or(exit_error);
    }
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
  cmd->add_flag("--raw", args->raw,
                "print a str result as it is (no JSON quoting), followed by a newline; other "
                "results print as JSON")
      ->disable_flag_override();
  cmd->add_option("--cwd", args->cwd, "the interpreter's working directory (default: ours)")
      ->type_name("DIR")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--path", args->paths,
                  "put DIR in front of sys.path, before the init script runs, so that modules "
                  "in it import (repeatable, in order)")
      ->type_name("DIR")
      ->allow_extra_args(false);
  CLI::Option* file =
      cmd->add_option("-f,--file", args->file,
                      "read the code from FILE (tracebacks name it) instead of CODE")
          ->type_name("FILE")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  CLI::Option* code =
      cmd->add_option("CODE", args->code, "Python code, or '-' to read it from stdin");
  return [args, file, code] {
    args->file_given = file->count() > 0;
    args->code_given = code->count() > 0;
    return run_eval(prepare(*args));
  };
}

} // namespace pyvisor::cli
