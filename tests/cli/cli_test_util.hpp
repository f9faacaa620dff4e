#pragma once

// Helpers of the pyvisor program's tests: run the real program (PYVISOR_CLI) with arguments
// and stdin, capturing its exit status, stdout and stderr; temporary directories and files.

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "support/temp_files.hpp"

extern char** environ;

namespace pyvisor::cli_test {

using pyvisor::test::read_file;
using pyvisor::test::temp_dir;

inline const std::string program = PYVISOR_CLI;

struct run_result {
  int status = -1;  ///< exit status, or 128+N for signal N
  std::string out;
  std::string err;
};

inline void write_file(const std::string& path, const std::string& text) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}


/// A started process whose stdout and stderr go to files (no pipe deadlock).
struct started_process {
  pid_t pid = -1;
  std::unique_ptr<temp_dir> io;  ///< in, out, err
  std::string error;             ///< why it could not start
};

/// Starts `exe args...` with `input` on stdin.
inline started_process start_process(const std::string& exe, const std::vector<std::string>& args,
                                     const std::string& input = {}) {
  started_process p;
  p.io = std::make_unique<temp_dir>();
  const temp_dir& io = *p.io;
  write_file(io / "in", input);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 0, (io / "in").c_str(), O_RDONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 1, (io / "out").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  posix_spawn_file_actions_addopen(&fa, 2, (io / "err").c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
  std::vector<std::string> all{exe};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (std::string& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int rc = posix_spawnp(&p.pid, exe.c_str(), &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) {
    p.pid = -1;
    p.error = "posix_spawn failed: " + std::to_string(rc);
  }
  return p;
}

/// Waits for a started process to end.
inline run_result finish_process(started_process& p) {
  run_result r;
  if (p.pid < 0) {
    r.err = p.error;
    return r;
  }
  int ws = 0;
  while (::waitpid(p.pid, &ws, 0) < 0 && errno == EINTR) {
  }
  p.pid = -1;
  r.status = WIFEXITED(ws) ? WEXITSTATUS(ws) : 128 + WTERMSIG(ws);
  r.out = read_file(*p.io / "out");
  r.err = read_file(*p.io / "err");
  return r;
}

/// Runs `exe args...` with `input` on stdin.
inline run_result run_process(const std::string& exe, const std::vector<std::string>& args,
                              const std::string& input = {}) {
  started_process p = start_process(exe, args, input);
  return finish_process(p);
}

/// Runs the pyvisor program.
inline run_result pyvisor(const std::vector<std::string>& args, const std::string& input = {}) {
  return run_process(program, args, input);
}

/// The lines of `text` (without their newlines).
inline std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

/// For failure messages.
inline std::string describe(const run_result& r) {
  return "status " + std::to_string(r.status) + "\n--- stdout:\n" + r.out + "--- stderr:\n" + r.err;
}

} // namespace pyvisor::cli_test
