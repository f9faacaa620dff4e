// Helpers shared by pyvisor's C++ benchmarks (see bench/README.md): command-line parsing,
// nearest-rank percentiles, spawning the interpreter, and the one-JSON-object output.
//
// Every program prints exactly one JSON object on stdout; errors go to stderr with exit code 1
// (2 for usage errors). A program that cannot measure something for a reason that is not a
// failure (e.g. a feature the runner does not have yet) prints {"bench": ..., "skipped": "why"}
// and exits 0; bench/run shows that as "skipped".
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <optional>
#include <exception>
#include <functional>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "pyvisor/interpreter.hpp"
#include "pyvisor/interpreter_options.hpp"
#include "pyvisor/runtime.hpp"

namespace pyvisor_bench {

using clock_type = std::chrono::steady_clock;

inline double us_since(clock_type::time_point t0, clock_type::time_point t1) {
  return std::chrono::duration<double, std::micro>(t1 - t0).count();
}

// Nearest-rank percentile of a sorted vector (same definition as bench_c_pipe, py_floor.py and
// bench_eval_serial).
inline double percentile(const std::vector<double>& sorted, double q) {
  const auto n = static_cast<long>(sorted.size());
  long rank = static_cast<long>(std::ceil(std::round(q * static_cast<double>(n) * 1e6) / 1e6));
  rank = std::clamp(rank, 1L, n);
  return sorted[static_cast<std::size_t>(rank - 1)];
}

struct summary {
  double p50 = 0, p99 = 0, mean = 0, min = 0, max = 0;
};

// Sorts `samples` (non-empty) and summarizes them.
inline summary summarize(std::vector<double>& samples) {
  summary s;
  s.mean = std::accumulate(samples.begin(), samples.end(), 0.0) /
           static_cast<double>(samples.size());
  std::sort(samples.begin(), samples.end());
  s.p50 = percentile(samples, 0.50);
  s.p99 = percentile(samples, 0.99);
  s.min = samples.front();
  s.max = samples.back();
  return s;
}

// Runs a benchmark body; an exception becomes a message and exit code 1.
template <class F>
int guarded(const char* prog, F&& body) {
  try {
    return body();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "%s: exception: %s\n", prog, e.what());
    return 1;
  }
}

// Minimal JSON string escaping.
inline std::string json_str(std::string_view s) {
  std::string out = "\"";
  for (char c : s) {
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\t': out += "\\t"; break;
      default:
        if (static_cast<unsigned char>(c) < 0x20) {
          char buf[8];
          std::snprintf(buf, sizeof buf, "\\u%04x", static_cast<unsigned>(c));
          out += buf;
        } else {
          out += c;
        }
    }
  }
  return out + "\"";
}

// Builds one flat JSON object: json_object{}.str("bench", "x").num("p50_us", 1.5).print().
class json_object {
public:
  json_object& str(std::string_view key, std::string_view v) { return raw(key, json_str(v)); }
  json_object& num(std::string_view key, double v, int decimals = 3) {
    if (!std::isfinite(v))
      return raw(key, "null");
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return raw(key, buf);
  }
  json_object& integer(std::string_view key, long long v) { return raw(key, std::to_string(v)); }
  json_object& boolean(std::string_view key, bool v) { return raw(key, v ? "true" : "false"); }
  json_object& raw(std::string_view key, std::string_view json) {
    body_ += body_.empty() ? "{" : ",";
    body_ += json_str(key);
    body_ += ':';
    body_ += json;
    return *this;
  }
  // Prints the object and a newline on stdout.
  void print() const {
    std::printf("%s}\n", body_.empty() ? "{" : body_.c_str());
    std::fflush(stdout);
  }

private:
  std::string body_;
};

// The options every pyvisor benchmark takes.
struct common_options {
  bool quick = false;
  std::string python = "/usr/bin/python3";
  std::string runner_dir;
  std::optional<bool> eager_tasks;  // unset: the library's default
};

// A count >= 0 with an optional binary K/M/G suffix; exits 2 with a message when malformed.
inline long long parse_count(const char* prog, const char* opt, const char* s) {
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s, &end, 10);
  if (errno == 0 && end != s && v >= 0) {
    switch (*end) {
      case 'k': case 'K': v <<= 10; ++end; break;
      case 'm': case 'M': v <<= 20; ++end; break;
      case 'g': case 'G': v <<= 30; ++end; break;
      default: break;
    }
  }
  if (errno != 0 || end == s || *end != '\0' || v < 0) {
    std::fprintf(stderr, "%s: bad value for %s: %s\n", prog, opt, s);
    std::exit(2);
  }
  return v;
}

// A tiny argv walker: `while (cli.next()) { if (cli.is("--iters")) x = cli.count(); ... }`.
class cli {
public:
  cli(const char* prog, int argc, char** argv) : prog_(prog), argc_(argc), argv_(argv) {}

  bool next() {
    if (++i_ >= argc_)
      return false;
    arg_ = argv_[i_];
    return true;
  }
  bool is(const char* flag) const { return std::strcmp(arg_, flag) == 0; }
  const char* arg() const { return arg_; }

  const char* value() {
    if (i_ + 1 >= argc_) {
      std::fprintf(stderr, "%s: %s needs a value\n", prog_, arg_);
      std::exit(2);
    }
    return argv_[++i_];
  }
  // A count >= 0, with an optional binary K/M/G suffix.
  long long count() {
    const char* opt = arg_;
    return parse_count(prog_, opt, value());
  }
  // Comma-separated counts (each with an optional suffix), e.g. "1M,64M" or "1,16,256".
  std::vector<long long> counts() {
    const char* opt = arg_;
    std::string all = value();
    std::vector<long long> out;
    std::size_t pos = 0;
    while (true) {
      auto comma = all.find(',', pos);
      auto item = all.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (!item.empty())
        out.push_back(parse_count(prog_, opt, item.c_str()));
      if (comma == std::string::npos)
        break;
      pos = comma + 1;
    }
    return out;
  }
  bool on_off() {
    const char* opt = arg_;
    std::string_view v = value();
    if (v == "on" || v == "true" || v == "1")
      return true;
    if (v == "off" || v == "false" || v == "0")
      return false;
    std::fprintf(stderr, "%s: %s takes on or off, not %.*s\n", prog_, opt,
                 static_cast<int>(v.size()), v.data());
    std::exit(2);
  }
  // Handles --quick, --python, --runner-dir and --eager-tasks; false for anything else.
  bool common(common_options& o) {
    if (is("--quick"))
      o.quick = true;
    else if (is("--python"))
      o.python = value();
    else if (is("--runner-dir"))
      o.runner_dir = value();
    else if (is("--eager-tasks"))
      o.eager_tasks = on_off();
    else
      return false;
    return true;
  }
  [[noreturn]] void unknown(void (*usage)(std::FILE*)) const {
    std::fprintf(stderr, "%s: unknown option %s\n", prog_, arg_);
    usage(stderr);
    std::exit(2);
  }

private:
  const char* prog_;
  int argc_;
  char** argv_;
  int i_ = 0;
  const char* arg_ = "";
};

inline constexpr const char* common_usage =
  "  common:   [--quick] [--python PATH] [--runner-dir DIR] [--eager-tasks on|off]\n"
  "            (--python default /usr/bin/python3; --eager-tasks default: the library's)\n";

// One count option of a benchmark (`--iters N`): where it goes, its defaults when it is not
// given (quick / full; -1: none, the value stays as initialized) and its least value.
struct count_option {
  const char* flag;
  long long* value;
  long long quick = -1;
  long long full = -1;
  long long least = 1;
};

// The main() of a benchmark: the common options, its count options, anything else through
// `other` (true: taken), -h/--help; then the defaults and the least values (exit 2 naming the
// option), then `run` inside guarded().
template <class Run>
int bench_main(const char* prog, int argc, char** argv, common_options& c,
               std::initializer_list<count_option> counts, void (*usage)(std::FILE*), Run run,
               const std::function<bool(cli&)>& other = {}) {
  cli a{prog, argc, argv};
  while (a.next()) {
    if (a.common(c))
      continue;
    auto k = std::find_if(counts.begin(), counts.end(),
                          [&](const count_option& o) { return a.is(o.flag); });
    if (k != counts.end()) {
      *k->value = a.count();
      continue;
    }
    if (other && other(a))
      continue;
    if (a.is("-h") || a.is("--help"))
      return usage(stdout), 0;
    a.unknown(usage);
  }
  for (const auto& k : counts) {
    if (*k.value < 0 && k.full >= 0)
      *k.value = c.quick ? k.quick : k.full;
    if (*k.value < k.least) {
      std::fprintf(stderr, "%s: %s must be >= %lld\n", prog, k.flag, k.least);
      return 2;
    }
  }
  return guarded(prog, run);
}

// interpreter_options from the common options (field by field, so that gcc's -Wextra does not
// warn about designated initializers that leave fields to their defaults).
inline pyvisor::interpreter_options interpreter_opts(const common_options& c) {
  pyvisor::interpreter_options io;
  io.python = c.python;
  if (!c.runner_dir.empty())
    io.runner_dir = c.runner_dir;
  if (c.eager_tasks)
    io.eager_tasks = *c.eager_tasks;
  return io;
}

// Spawns an interpreter; prints why not on stderr.
inline std::optional<pyvisor::interpreter> spawn(const char* prog, pyvisor::runtime& rt,
                                                 pyvisor::interpreter_options io) {
  const std::string python = io.python;
  auto spawned = rt.spawn_interpreter(std::move(io));
  if (!spawned) {
    std::fprintf(stderr, "%s: spawn_interpreter(%s) failed: %s\n", prog, python.c_str(),
                 spawned.error().to_string().c_str());
    return std::nullopt;
  }
  return std::move(*spawned);
}

// Stops the interpreter; false (with a message) on error.
inline bool stop(const char* prog, pyvisor::interpreter& py) {
  if (auto st = py.stop(); !st) {
    std::fprintf(stderr, "%s: stop failed: %s\n", prog, st.error().to_string().c_str());
    return false;
  }
  return true;
}

// The fields every pyvisor benchmark reports about its interpreter.
inline json_object& describe(json_object& j, std::string_view bench, const common_options& c,
                             const pyvisor::interpreter_options& io, pyvisor::interpreter& py) {
  return j.str("bench", bench)
    .str("python", c.python)
    .str("python_version", py.python_version())
    .boolean("eager_tasks", io.eager_tasks);
}

} // namespace pyvisor_bench
