// pyvisor: command-line front end of the pyvisor library.
//
//   pyvisor eval [--python EXE] [--init-script CODE] [--var NAME=JSON]... [--timeout DURATION]
//                [--json] CODE
//
// Exit status: 0 success, 1 error (Python exception, timeout, spawn failure, ...), 2 usage
// error, 128+N interrupted by signal N. See cli/README.md.

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <array>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <exception>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>
#include <vector>

#include "json.hpp"
#include "pyvisor/errc.hpp"
#include "pyvisor/error.hpp"
#include "pyvisor/interpreter.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/runtime.hpp"
#include "pyvisor/vars.hpp"

namespace {

using namespace std::chrono_literals;

constexpr int exit_ok = 0;
constexpr int exit_error = 1;
constexpr int exit_usage = 2;

/// Nesting allowed in a --var value. A var travels at depth 4 of an `init`/`eval` frame
/// ([kind, id, op, payload] -> payload map -> "vars" map -> value), and both ends reject
/// bodies deeper than 128 (docs/protocol.md): so at most 125 levels of JSON nesting.
constexpr std::size_t max_var_depth = pyvisor::cli::default_max_json_depth - 3;

constexpr std::string_view main_usage =
    R"(usage: pyvisor <command> [options]

Runs Python code in supervised interpreter processes.

commands:
  eval    run Python code in a fresh interpreter and print its result as JSON

Run 'pyvisor <command> --help' for the options of a command.
)";

constexpr std::string_view eval_usage =
    R"(usage: pyvisor eval [options] CODE

Starts a Python interpreter, runs CODE in it and prints the value CODE returns as one line
of JSON on stdout. CODE is a block of Python statements: end it with `return EXPR` to
produce a result (without a return the result is null); top-level `await` works.
CODE '-' reads the code from standard input.

options:
  --python EXE          Python executable: a name looked up in PATH or a path
                        (default: python3)
  --init-script CODE    code run once before CODE, in the namespace CODE starts from
  --var NAME=JSON       bind the Python variable NAME to a JSON value, for the init script
                        and for CODE (repeatable)
  --timeout DURATION    give up on CODE after DURATION: a number and a unit, e.g.
                        250ms, 1.5s, 5s, 1m, 1h (default: no limit)
  --json                report errors as one JSON line on stdout:
                        {"error": {"code", "type", "message", "traceback"}}
  -h, --help            show this help and exit

Python's own stdout and stderr output (print, warnings) goes to stderr, one prefixed line
per line. JSON rendering of results (tuples, sets, bytes, big ints, ...): see README.

exit status:
  0    success
  1    error: the code raised or did not compile, timeout, the interpreter failed, ...
       ("error: <code>: <message>" and the Python traceback on stderr, or JSON with --json)
  2    usage error
  128+N  interrupted by signal N (SIGINT: 130)
)";

struct usage_error {
  std::string message;
};

struct eval_args {
  bool help = false;
  std::string python = "python3";
  std::string init_script;
  std::vector<std::pair<std::string, std::string>> vars;  ///< name, msgpack bytes
  std::optional<std::chrono::milliseconds> timeout;
  bool json = false;
  std::string code;
  bool code_from_stdin = false;
};

void write_all(std::FILE* f, std::string_view s) {
  std::fwrite(s.data(), 1, s.size(), f);
}

// ---------------------------------------------------------------------------------------------
// Argument parsing
// ---------------------------------------------------------------------------------------------

/// "250ms", "1.5s", "5s", "1m", "1h": digits with an optional fraction, then a unit.
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  std::size_t i = 0;
  const auto digits = [&] {
    const std::size_t start = i;
    while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
    return i > start;
  };
  if (!digits()) return std::nullopt;
  if (i < text.size() && text[i] == '.') {
    ++i;
    if (!digits()) return std::nullopt;
  }
  const std::string_view number = text.substr(0, i);
  const std::string_view unit = text.substr(i);
  double unit_ms = 0;
  if (unit == "ms") {
    unit_ms = 1;
  } else if (unit == "s") {
    unit_ms = 1000;
  } else if (unit == "m") {
    unit_ms = 60.0 * 1000;
  } else if (unit == "h") {
    unit_ms = 3600.0 * 1000;
  } else {
    return std::nullopt;
  }
  double value = 0;
  const auto r = std::from_chars(number.data(), number.data() + number.size(), value);
  if (r.ec != std::errc{} || r.ptr != number.data() + number.size()) return std::nullopt;
  const double ms = std::round(value * unit_ms);
  if (!(ms >= 1) || ms > 1e12) return std::nullopt;  // at least 1 ms, at most ~31 years
  return std::chrono::milliseconds(static_cast<std::int64_t>(ms));
}

bool is_python_keyword(std::string_view s) {
  static constexpr std::array<std::string_view, 35> keywords = {
      "False",  "None",     "True",    "and",    "as",       "assert", "async",
      "await",  "break",    "class",   "continue", "def",    "del",    "elif",
      "else",   "except",   "finally", "for",    "from",     "global", "if",
      "import", "in",       "is",      "lambda", "nonlocal", "not",    "or",
      "pass",   "raise",    "return",  "try",    "while",    "with",   "yield"};
  for (const auto k : keywords) {
    if (k == s) return true;
  }
  return false;
}

/// A Python identifier: ASCII letters, digits and '_' (not first: a digit), plus any
/// non-ASCII UTF-8 (Python checks the Unicode rules itself), and not a keyword.
bool is_identifier(std::string_view s) {
  if (s.empty() || !pyvisor::cli::is_valid_utf8(s) || is_python_keyword(s)) return false;
  if (s[0] >= '0' && s[0] <= '9') return false;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    const bool ok = u >= 0x80 || c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                    (c >= '0' && c <= '9');
    if (!ok) return false;
  }
  return true;
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
    return {name, pyvisor::cli::json_to_msgpack(spec.substr(eq + 1), max_var_depth)};
  } catch (const pyvisor::cli::json_error& e) {
    throw usage_error{"--var " + name + ": invalid JSON: " + e.what()};
  }
}

/// Parses the arguments after "eval". Options and CODE may come in any order; "--" ends the
/// options. Long options take their value as the next argument or after '='.
eval_args parse_eval_args(int argc, char** argv) {
  eval_args a;
  bool have_code = false;
  bool options_done = false;
  std::set<std::string> var_names;
  for (int i = 0; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (!options_done && arg == "--") {
      options_done = true;
      continue;
    }
    if (options_done || arg.size() < 2 || arg[0] != '-') {
      if (have_code) {
        throw usage_error{"unexpected argument '" + std::string(arg) +
                          "' (CODE must be a single argument: quote it)"};
      }
      a.code = std::string(arg);
      a.code_from_stdin = arg == "-";
      have_code = true;
      continue;
    }
    std::string_view name = arg;
    std::optional<std::string_view> inline_value;
    if (arg.starts_with("--")) {
      if (const auto eq = arg.find('='); eq != std::string_view::npos) {
        name = arg.substr(0, eq);
        inline_value = arg.substr(eq + 1);
      }
    }
    const auto value = [&]() -> std::string_view {
      if (inline_value) return *inline_value;
      if (i + 1 >= argc) throw usage_error{"option " + std::string(name) + " needs a value"};
      return argv[++i];
    };
    const auto no_value = [&] {
      if (inline_value) throw usage_error{"option " + std::string(name) + " takes no value"};
    };
    if (name == "-h" || name == "--help") {
      no_value();
      a.help = true;
    } else if (name == "--json") {
      no_value();
      a.json = true;
    } else if (name == "--python") {
      a.python = std::string(value());
      if (a.python.empty()) throw usage_error{"--python needs a non-empty EXE"};
    } else if (name == "--init-script") {
      a.init_script = std::string(value());
      if (!pyvisor::cli::is_valid_utf8(a.init_script)) {
        throw usage_error{"--init-script: the code is not valid UTF-8"};
      }
    } else if (name == "--var") {
      auto v = parse_var(value());
      if (!var_names.insert(v.first).second) {
        throw usage_error{"--var " + v.first + " given more than once"};
      }
      a.vars.push_back(std::move(v));
    } else if (name == "--timeout") {
      const std::string_view text = value();
      const auto d = parse_duration(text);
      if (!d) {
        throw usage_error{"--timeout: invalid DURATION '" + std::string(text) +
                          "' (expected a number and a unit, e.g. 250ms, 1.5s, 5s, 1m, 1h; "
                          "at least 1ms)"};
      }
      a.timeout = *d;
    } else {
      throw usage_error{"unknown option '" + std::string(arg) + "'"};
    }
  }
  if (!a.help && !have_code) throw usage_error{"missing CODE"};
  return a;
}

bool read_stdin(std::string& out) {
  char buf[65536];
  for (;;) {
    const std::size_t n = std::fread(buf, 1, sizeof buf, stdin);
    out.append(buf, n);
    if (n < sizeof buf) return std::ferror(stdin) == 0;
  }
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

/// Turns SIGINT/SIGTERM/SIGHUP into a clean stop: the first one stops the interpreter (its
/// stop sequence ends the Python process, and the pending call fails), a second one kills the
/// interpreter's process group and exits at once.
///
/// The handlers only write the signal number to a pipe; a thread of ours does the rest. (No
/// signal blocking: a blocked mask would be inherited by the Python child, whereas caught
/// signals revert to their default action across exec.)
class signal_watcher {
public:
  signal_watcher() {
    if (pipe2(fds_, O_CLOEXEC) != 0) {
      throw std::system_error(errno, std::generic_category(), "pipe2");
    }
    fcntl(fds_[1], F_SETFL, fcntl(fds_[1], F_GETFL) | O_NONBLOCK);
    write_fd_.store(fds_[1]);
    thread_ = std::thread([this] { run(); });
    struct sigaction sa {};
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    for (std::size_t k = 0; k < signals.size(); ++k) sigaction(signals[k], &sa, &old_[k]);
  }

  ~signal_watcher() { join(); }

  signal_watcher(const signal_watcher&) = delete;
  signal_watcher& operator=(const signal_watcher&) = delete;

  /// Makes `i` the interpreter a signal stops. Returns false when a signal already came.
  bool watch(const pyvisor::interpreter& i) {
    std::lock_guard lock(mutex_);
    target_ = i;
    return signal_.load() == 0;
  }

  /// The first signal received, 0 if none.
  int signal() const noexcept { return signal_.load(); }

  /// Restores the signal handlers and ends the thread (idempotent). Call before the runtime
  /// goes away.
  void join() {
    if (!thread_.joinable()) return;
    for (std::size_t k = 0; k < signals.size(); ++k) sigaction(signals[k], &old_[k], nullptr);
    const unsigned char wake = 0;
    while (write(fds_[1], &wake, 1) < 0 && errno == EINTR) {
    }
    thread_.join();
    write_fd_.store(-1);
    close(fds_[0]);
    close(fds_[1]);
    std::lock_guard lock(mutex_);
    target_.reset();
  }

private:
  static constexpr std::array<int, 3> signals = {SIGINT, SIGTERM, SIGHUP};
  static inline std::atomic<int> write_fd_{-1};

  static void on_signal(int sig) {
    const int saved = errno;
    const unsigned char b = static_cast<unsigned char>(sig);
    const int fd = write_fd_.load();
    if (fd >= 0) (void)!write(fd, &b, 1);
    errno = saved;
  }

  void run() {
    for (;;) {
      unsigned char b = 0;
      const ssize_t n = read(fds_[0], &b, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0 || b == 0) return;  // woken by join()
      const int sig = b;
      int expected = 0;
      if (!signal_.compare_exchange_strong(expected, sig)) {
        // Second signal: do not wait for the stop sequence.
        if (std::optional<pyvisor::interpreter> t = current()) {
          const int pid = t->os_pid();
          if (pid > 0 && getpgid(pid) == pid) kill(-pid, SIGKILL);
        }
        _exit(128 + sig);
      }
      if (std::optional<pyvisor::interpreter> t = current()) (void)t->stop();
    }
  }

  std::optional<pyvisor::interpreter> current() {
    std::lock_guard lock(mutex_);
    return target_;
  }

  int fds_[2] = {-1, -1};
  std::array<struct sigaction, 3> old_{};
  std::thread thread_;
  std::atomic<int> signal_{0};
  std::mutex mutex_;
  std::optional<pyvisor::interpreter> target_;
};

const char* signal_name(int sig) {
  switch (sig) {
    case SIGINT: return "SIGINT";
    case SIGTERM: return "SIGTERM";
    case SIGHUP: return "SIGHUP";
    default: return "a signal";
  }
}

// ---------------------------------------------------------------------------------------------
// Output
// ---------------------------------------------------------------------------------------------

void print_error(const pyvisor::error& e, bool json) {
  using pyvisor::cli::append_json_string;
  if (json) {
    std::string out = "{\"error\":{\"code\":";
    append_json_string(out, pyvisor::to_string(e.code));
    out += ",\"type\":";
    if (e.python_type.empty()) {
      out += "null";
    } else {
      append_json_string(out, e.python_type);
    }
    out += ",\"message\":";
    append_json_string(out, e.message);
    out += ",\"traceback\":[";
    for (std::size_t k = 0; k < e.traceback.size(); ++k) {
      if (k != 0) out += ',';
      append_json_string(out, e.traceback[k]);
    }
    out += "]}}\n";
    write_all(stdout, out);
    std::fflush(stdout);
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

int usage_failure(const std::string& message, std::string_view usage_line,
                  std::string_view help_hint) {
  std::string out = "pyvisor: " + message + "\n";
  out += usage_line;
  out += help_hint;
  write_all(stderr, out);
  return exit_usage;
}

// ---------------------------------------------------------------------------------------------
// eval
// ---------------------------------------------------------------------------------------------

int run_eval(const eval_args& a, const std::string& code) {
  pyvisor::interpreter_options opts;
  opts.python = a.python;
  opts.init_script.code = a.init_script;
  pyvisor::vars vars;
  for (const auto& [name, bytes] : a.vars) {
    // The CLI's own JSON converter made these bytes; the check cannot fail for them.
    auto packed = pyvisor::arg::from_msgpack(bytes);
    if (!packed) {
      write_all(stderr, "pyvisor: --var " + name + ": " + packed.error().to_string() + "\n");
      return exit_usage;
    }
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
          auto result = interp.eval(code, vars, eo);
          if (result) {
            // plain(): tuple/set payloads already decoded once, by reference, under the
            // frame limits (the renderer would otherwise decode each level again).
            result_json = pyvisor::cli::to_json(result->plain());
          } else {
            failure = result.error();
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
  result_json += '\n';
  write_all(stdout, result_json);
  if (std::fflush(stdout) != 0 || std::ferror(stdout)) {
    std::fprintf(stderr, "pyvisor: cannot write the result to stdout: %s\n",
                 std::strerror(errno));
    return exit_error;
  }
  return exit_ok;
}

int eval_command(int argc, char** argv) {
  constexpr std::string_view usage_line = "usage: pyvisor eval [options] CODE\n";
  constexpr std::string_view hint = "Run 'pyvisor eval --help' for the options.\n";
  eval_args a;
  try {
    a = parse_eval_args(argc, argv);
  } catch (const usage_error& e) {
    return usage_failure(e.message, usage_line, hint);
  }
  if (a.help) {
    write_all(stdout, eval_usage);
    return std::fflush(stdout) == 0 ? exit_ok : exit_error;
  }
  std::string code;
  if (a.code_from_stdin) {
    if (!read_stdin(code)) {
      std::fprintf(stderr, "pyvisor: cannot read the code from stdin: %s\n",
                   std::strerror(errno));
      return exit_error;
    }
  } else {
    code = a.code;
  }
  if (!pyvisor::cli::is_valid_utf8(code)) {
    return usage_failure("CODE is not valid UTF-8", usage_line, hint);
  }
  return run_eval(a, code);
}

} // namespace

int main(int argc, char** argv) {
  constexpr std::string_view usage_line = "usage: pyvisor <command> [options]\n";
  constexpr std::string_view hint = "Run 'pyvisor --help' for the commands.\n";
  try {
    if (argc < 2) return usage_failure("missing command", usage_line, hint);
    const std::string_view command = argv[1];
    if (command == "-h" || command == "--help" || command == "help") {
      write_all(stdout, main_usage);
      return std::fflush(stdout) == 0 ? exit_ok : exit_error;
    }
    if (command == "eval") return eval_command(argc - 2, argv + 2);
    return usage_failure("unknown command '" + std::string(command) + "'", usage_line, hint);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return exit_error;
  }
}
