#pragma once

#include <map>
#include <mutex>
#include <string>

#include "pyvisor/expected.hpp"

namespace pyvisor::process {

/// Resolves the `python` option to the real interpreter binary, once per distinct value:
/// a bare name is looked up in PATH, the result is made canonical (symlinks resolved), and a
/// wrapper script (a pyenv shim costs ~150 ms per start) is replaced by the `sys.executable`
/// that a one-time probe run of it reports. Thread-safe; results are cached.
class python_resolver {
public:
  expected<std::string> resolve(const std::string& python);

private:
  std::mutex mu_;
  std::map<std::string, std::string> cache_;
};

/// Looks `name` up in PATH (or checks it when it contains a '/'); "" when not executable.
std::string find_executable(const std::string& name);

} // namespace pyvisor::process
