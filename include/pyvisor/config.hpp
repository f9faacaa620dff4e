#pragma once

/// Config files (TOML, config/pyvisor.toml documents every key): loading with every problem
/// reported at once, validation of specs built in C++, and writing a spec back as TOML
/// (spec -> toml -> spec round-trips).
///
/// Durations are strings "<number><unit>" with unit ms, s, m or h ("250ms", "5s", "1.5m"), or
/// "forever"; sizes are integers (bytes) or strings "<number><unit>" with unit B, KiB, MiB,
/// GiB, TiB (powers of 1024) or KB, MB, GB, TB (powers of 1000): "512MiB".

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "pyvisor/expected.hpp"
#include "pyvisor/runtime_spec.hpp"

namespace pyvisor {

/// One problem in a config (or a spec).
struct config_problem {
  std::string file;     ///< the file; empty for a spec built in C++
  int line = 0;         ///< 1-based; 0 when unknown
  int column = 0;       ///< 1-based; 0 when unknown
  /// The TOML key the problem is about, dotted, with array elements as "[i]":
  /// "pools.web.size", "supervisors.app.children[1]" (also for a spec built in C++; empty for
  /// TOML syntax errors).
  std::string path;
  std::string message;  ///< e.g. "unknown key 'sise' (did you mean 'size'?)"

  /// "file:line:col: path: message"; parts that are unknown or empty are left out
  /// ("path: message" for a spec built in C++).
  std::string to_string() const;
};

/// What loading produced: a spec only when there is no problem.
struct config_result {
  std::optional<runtime_spec> spec;
  std::vector<config_problem> problems;

  bool ok() const { return spec.has_value() && problems.empty(); }
};

/// Loads and validates the file at `path`. Relative paths inside it (init_file, venv paths,
/// work_dir) are relative to the file's directory.
config_result load_config(const std::string& path);

/// Loads and validates TOML text; `name` is the file name in problems, `base_dir` the
/// directory relative paths are resolved against (empty: the current directory).
config_result load_config_string(std::string_view text, std::string name = "<string>",
                                 std::string base_dir = {});

/// The checks of the loader that do not depend on TOML (names, references, cycles, ranges,
/// files that must exist), for a spec built in C++. Empty: valid.
std::vector<config_problem> validate(const runtime_spec& spec);

/// The names of the pools and supervisors no supervisor lists as a child: the children of the
/// implicit root supervisor "root", in declaration order (the pools in file order, then the
/// supervisors in file order).
std::vector<std::string> root_children(const runtime_spec& spec);

/// The spec as TOML that load_config_string reads back into an equal spec. Only what differs
/// from the defaults is written unless `all` is set.
std::string to_toml(const runtime_spec& spec, bool all = false);

/// "250ms" -> 250ms; "forever" -> pyvisor::forever. Error text in the result on failure.
expected<std::chrono::milliseconds> parse_duration(std::string_view text);
/// "512MiB" -> 536870912.
expected<std::uint64_t> parse_size(std::string_view text);

/// A listening address `[runtime] http_listen`: "HOST:PORT" with an IPv4 address, a bracketed
/// IPv6 address ("[::1]:4270") or a host name; PORT 0..65535 (0: any free port).
struct listen_address {
  std::string host;  ///< without brackets
  int port = 0;
  /// 127.0.0.0/8, ::1 or "localhost": reachable from this machine only.
  bool loopback() const;
};
/// Parses "HOST:PORT"; a config_error saying what is wrong otherwise.
expected<listen_address> parse_listen_address(std::string_view text);
/// The canonical text of a duration ("250ms", "5s", "2m", "forever") and a size ("512MiB").
std::string format_duration(std::chrono::milliseconds d);
std::string format_size(std::uint64_t bytes);

} // namespace pyvisor
