#pragma once

// The commands of the pyvisor program (main.cpp dispatches): each registers its CLI11
// subcommand and returns what runs it once the arguments are parsed.

#include <cstdio>
#include <functional>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

namespace pyvisor::gateway {}

namespace pyvisor::cli {

// The JSON rendering is the gateway layer's (actors/gateway/json_value.hpp): one for both.
using namespace pyvisor::gateway;

inline constexpr int exit_ok = 0;
inline constexpr int exit_error = 1;
inline constexpr int exit_usage = 2;

/// A usage error found after parsing (a bad --var, --timeout, ...): exit status 2.
struct usage_error {
  std::string message;
};

/// Runs a parsed command; returns the exit status. May throw usage_error.
using command_runner = std::function<int()>;

/// `pyvisor eval`: eval_command.cpp.
command_runner add_eval_command(CLI::App& app);
/// `pyvisor check`: check_command.cpp.
command_runner add_check_command(CLI::App& app);
/// `pyvisor env sync`: env_command.cpp.
command_runner add_env_command(CLI::App& app);
/// `pyvisor serve`: serve_command.cpp.
command_runner add_serve_command(CLI::App& app);
/// `pyvisor status`: status_command.cpp (a client of the daemon: client.hpp).
command_runner add_status_command(CLI::App& app);
/// `pyvisor session new|eval|show|rm`: session_command.cpp.
command_runner add_session_command(CLI::App& app);

inline void write_all(std::FILE* f, std::string_view s) { std::fwrite(s.data(), 1, s.size(), f); }

/// Writes `text` to stdout and flushes it; false when that failed.
inline bool write_stdout(std::string_view text) {
  write_all(stdout, text);
  return std::fflush(stdout) == 0 && !std::ferror(stdout);
}

} // namespace pyvisor::cli
