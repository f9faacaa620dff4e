// `pyvisor eval [options] (CODE | -f FILE)`: runs the code in a fresh interpreter and prints
// its result as one line of JSON (docs/json.md); with --pool/--session (or --connect) in the
// daemon instead (eval_remote.cpp). See cli/README.md.

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "commands.hpp"
#include "eval_input.hpp"
#include "eval_output.hpp"
#include "eval_remote.hpp"
#include "gateway/http_errors.hpp"
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

constexpr std::string_view eval_description =
    R"(Starts a Python interpreter, runs CODE in it and prints the value CODE returns as one line
of JSON on stdout. CODE is a block of Python statements: end it with `return EXPR` to
produce a result (without a return the result is null); top-level `await` works.
CODE '-' reads the code from standard input; -f FILE reads it from FILE.

With --pool NAME (or --session ID) CODE runs in a pool (a session) of the daemon
`pyvisor serve` at --connect URL (default: $PYVISOR_URL, else http://127.0.0.1:4270) instead,
and prints the same way; --python, --init-script, --cwd and --path are then refused.)";

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
  128+N  interrupted by signal N (SIGINT: 130)
remote eval: the same; 1 also when the daemon cannot be reached ("error: connection_failed:
cannot connect to URL: ...") or refuses the request (401 unauthorized, 404 not_found, 410
session_gone, 429, 503, 504 timeout, ...: its error object, printed as above).)";

/// What the command line gave (strings; checked by prepare()).
struct eval_args {
  std::string python = "python3";
  std::string init_script;
  code_args code;  ///< --var, --timeout, --json, --raw, -f, CODE
  std::string cwd;
  std::vector<std::string> paths;
  remote_eval_args remote;  ///< --connect, --pool, --session, --key, --token-file, --cacert
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
  for (parsed_var& v : parse_vars(a.code.vars)) r.vars.emplace_back(v.name, std::move(v.msgpack));
  if (!a.code.timeout.empty()) {
    const auto t = parse_timeout(a.code.timeout);
    if (t != pyvisor::forever) r.timeout = t;
  }
  r.json = a.code.json;
  r.raw = a.code.raw;
  if (!a.cwd.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_directory(a.cwd, ec)) {
      throw usage_error{"--cwd: '" + a.cwd + "' is not a directory"};
    }
    r.cwd = a.cwd;
  }
  for (const std::string& dir : a.paths) r.paths.push_back(checked_path(dir));
  eval_code code = read_eval_code(a.code);
  r.code = std::move(code.code);
  r.code_file = std::move(code.file);
  // Tracebacks name -f FILE as given; relative to --cwd it would be another file, so then it is
  // made absolute (the interpreter reads the source lines it shows from it).
  if (a.code.file_given && !r.cwd.empty() && !std::filesystem::path(a.code.file).is_absolute()) {
    r.code_file = std::filesystem::absolute(a.code.file).string();
  }
  return r;
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
    print_error(error_document(pyvisor::make_error(
                    pyvisor::errc::cancelled, std::string("interrupted by ") + signal_name(sig))),
                a.json);
    return 128 + sig;
  }
  if (failure) {
    const json doc = error_document(*failure);
    return finish_eval(&doc, {}, a.json);
  }
  return finish_eval(nullptr, result_json, a.json);
}

} // namespace

command_runner add_eval_command(CLI::App& app) {
  auto args = std::make_shared<eval_args>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "run Python code in a fresh interpreter (or the daemon's pool) and print its "
              "result as JSON");
  cmd->footer(std::string(eval_description) + "\n\n" + std::string(eval_footer));
  std::vector<CLI::Option*> local_only;
  local_only.push_back(
      cmd->add_option("--python", args->python,
                      "Python executable: a name looked up in PATH or a path (default: python3)")
          ->type_name("EXE")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast));
  local_only.push_back(
      cmd->add_option("--init-script", args->init_script,
                      "code run once before CODE, in the namespace CODE starts from")
          ->type_name("CODE")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast));
  cmd->add_option("--var", args->code.vars,
                  "bind the Python variable NAME to a JSON value, for the init script and for "
                  "CODE (repeatable)")
      ->type_name("NAME=JSON")
      ->allow_extra_args(false);
  cmd->add_option("--timeout", args->code.timeout,
                  "give up on CODE after DURATION: a number and a unit, e.g. 250ms, 1.5s, 5s, "
                  "1m, 1h (default: no limit; remote: the pool's default_timeout)")
      ->type_name("DURATION")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_flag("--json", args->code.json,
                "report errors as one JSON line on stdout: "
                "{\"error\": {\"code\", \"type\", \"message\", \"traceback\"}}")
      ->disable_flag_override();
  cmd->add_flag("--raw", args->code.raw,
                "print a str result as it is (no JSON quoting), followed by a newline; other "
                "results print as JSON")
      ->disable_flag_override();
  local_only.push_back(
      cmd->add_option("--cwd", args->cwd, "the interpreter's working directory (default: ours)")
          ->type_name("DIR")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast));
  local_only.push_back(
      cmd->add_option("--path", args->paths,
                      "put DIR in front of sys.path, before the init script runs, so that "
                      "modules in it import (repeatable, in order)")
          ->type_name("DIR")
          ->allow_extra_args(false));
  CLI::Option* file =
      cmd->add_option("-f,--file", args->code.file,
                      "read the code from FILE (tracebacks name it) instead of CODE")
          ->type_name("FILE")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  CLI::Option* code =
      cmd->add_option("CODE", args->code.code, "Python code, or '-' to read it from stdin");
  // Remote eval: any of these makes it one.
  remote_eval_args& remote = args->remote;
  std::vector<CLI::Option*> remote_only;
  remote_only.push_back(
      cmd->add_option("--pool", remote.pool, "run CODE in the daemon's pool NAME")
          ->type_name("NAME")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast));
  remote_only.push_back(
      cmd->add_option("--session", remote.session,
                      "run CODE in the daemon's session ID (`pyvisor session new`)")
          ->type_name("ID")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast));
  remote_only.push_back(
      cmd->add_option("--key", remote.key,
                      "with --pool: route to the worker that owns K (key_affinity pools)")
          ->type_name("K")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast));
  remote_only.push_back(add_connect_options(cmd, remote.conn));
  remote_only.push_back(cmd->get_option("--token-file"));
  remote_only.push_back(cmd->get_option("--cacert"));
  return [args, file, code, local_only, remote_only] {
    args->code.file_given = file->count() > 0;
    args->code.code_given = code->count() > 0;
    const auto given = [](const std::vector<CLI::Option*>& opts) -> const CLI::Option* {
      for (const CLI::Option* o : opts) {
        if (o->count() > 0) return o;
      }
      return nullptr;
    };
    if (given(remote_only) == nullptr) return run_eval(prepare(*args));
    if (const CLI::Option* o = given(local_only)) {
      throw usage_error{o->get_name() + " applies to a local eval only (not with --pool, "
                                        "--session or --connect)"};
    }
    args->remote.code = args->code;
    return run_remote_eval(args->remote);
  };
}

} // namespace pyvisor::cli
