// Declarative venvs (pyvisor/venv.hpp): the stamp, check_venv and sync_venv. The tools
// (python -m venv, pip or uv) run as child processes through Boost.Process, their merged
// stdout/stderr read line by line into the progress callback.

#include "pyvisor/venv.hpp"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <deque>
#include <fstream>
#include <sstream>
#include <string>
#include <system_error>
#include <vector>

#include <boost/filesystem.hpp>
#include <boost/process/args.hpp>
#include <boost/process/child.hpp>
#include <boost/process/io.hpp>
#include <boost/process/pipe.hpp>
#include <boost/process/search_path.hpp>

#include "pyvisor/errc.hpp"
#include "pyvisor/error.hpp"

namespace pyvisor {
namespace {

namespace bp = boost::process;

constexpr std::string_view stamp_header = "pyvisor venv stamp 1";
constexpr std::size_t output_tail_lines = 20;

/// FNV-1a (64 bit) over length-prefixed fields: stable across builds and platforms.
class field_hash {
public:
  void add(std::string_view field) {
    const std::string len = std::to_string(field.size()) + ":";
    bytes(len);
    bytes(field);
  }
  std::string hex() const {
    char buf[17];
    std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h_));
    return buf;
  }

private:
  void bytes(std::string_view s) {
    for (const char c : s) {
      h_ ^= static_cast<unsigned char>(c);
      h_ *= 0x100000001b3ULL;
    }
  }
  std::uint64_t h_ = 0xcbf29ce484222325ULL;
};

/// What the venv itself is made from (changing it means recreating the venv).
std::string base_hash(const venv_spec& spec) {
  field_hash h;
  h.add(spec.python);
  h.add(spec.system_site_packages ? "system_site_packages" : "isolated");
  return h.hex();
}

std::string requirements_hash(const venv_spec& spec) {
  field_hash h;
  h.add(std::to_string(spec.requirements.size()));
  for (const std::string& r : spec.requirements) h.add(r);
  return h.hex();
}

std::string stamp_path(const venv_spec& spec) {
  return (boost::filesystem::path(spec.path) / std::string(venv_stamp_file)).string();
}

/// The "key value" lines of a stamp file; empty when there is none.
std::vector<std::pair<std::string, std::string>> read_stamp(const venv_spec& spec) {
  std::vector<std::pair<std::string, std::string>> out;
  std::ifstream in(stamp_path(spec));
  std::string line;
  if (!in || !std::getline(in, line) || line != stamp_header) return out;
  while (std::getline(in, line)) {
    const auto space = line.find(' ');
    if (space == std::string::npos || line.starts_with("#")) continue;
    out.emplace_back(line.substr(0, space), line.substr(space + 1));
  }
  return out;
}

std::string stamp_value(const std::vector<std::pair<std::string, std::string>>& stamp,
                        std::string_view key) {
  for (const auto& [k, v] : stamp) {
    if (k == key) return v;
  }
  return {};
}

std::string shell_words(const std::string& exe, const std::vector<std::string>& args) {
  std::string out = exe;
  for (const std::string& a : args) out += " " + a;
  return out;
}

/// Runs `exe args...` (stdin from /dev/null), passing its output to `progress` as
/// "<label>:   <line>"; fails with the last lines of its output.
expected<void> run_tool(const std::string& exe, const std::vector<std::string>& args,
                        const std::string& label, const venv_progress& progress) {
  boost::filesystem::path program = exe;
  if (exe.find('/') == std::string::npos) {
    program = bp::search_path(exe);
    if (program.empty()) {
      return make_error(errc::spawn_failed, label + ": cannot find '" + exe + "' in PATH");
    }
  }
  const std::string command = shell_words(exe, args);
  bp::ipstream out;
  std::error_code ec;
  bp::child child(program, bp::args(args), (bp::std_out & bp::std_err) > out,
                  bp::std_in < bp::null, ec);
  if (ec) {
    return make_error(errc::spawn_failed, label + ": cannot run `" + command + "`: " + ec.message());
  }
  std::deque<std::string> tail;
  std::string line;
  while (std::getline(out, line)) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (progress) progress(label + ":   " + line);
    tail.push_back(std::move(line));
    if (tail.size() > output_tail_lines) tail.pop_front();
  }
  child.wait(ec);
  const int code = ec ? -1 : child.exit_code();
  if (ec || code != 0) {
    std::string message = label + ": `" + command + "` failed (" +
                          (ec ? ec.message() : "exit status " + std::to_string(code)) + ")";
    if (!tail.empty()) message += "; its last output:";
    for (const std::string& l : tail) message += "\n  " + l;
    return make_error(errc::config_error, std::move(message));
  }
  return {};
}

expected<void> write_stamp(const venv_spec& spec) {
  const std::string path = stamp_path(spec);
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << venv_stamp(spec);
    out.flush();
    if (!out) return make_error(errc::config_error, "cannot write " + tmp);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    return make_error(errc::config_error,
                      "cannot write " + path + ": " + std::system_category().message(errno));
  }
  return {};
}

} // namespace

std::string_view to_string(venv_state::kind_t k) noexcept {
  switch (k) {
    case venv_state::up_to_date: return "up_to_date";
    case venv_state::missing: return "missing";
    case venv_state::stale: return "stale";
  }
  return "unknown";
}

std::string venv_python(const venv_spec& spec) {
  return (boost::filesystem::path(spec.path) / "bin" / "python").string();
}

std::string venv_stamp(const venv_spec& spec) {
  std::ostringstream out;
  out << stamp_header << "\n";
  out << "base " << base_hash(spec) << "\n";
  out << "requirements " << requirements_hash(spec) << "\n";
  out << "# python: " << spec.python << "\n";
  out << "# system_site_packages: " << (spec.system_site_packages ? "true" : "false") << "\n";
  for (const std::string& r : spec.requirements) out << "# requirement: " << r << "\n";
  return out.str();
}

venv_state check_venv(const venv_spec& spec) {
  const std::string python = venv_python(spec);
  if (spec.path.empty()) return {venv_state::missing, "the venv has no path"};
  if (::access(python.c_str(), X_OK) != 0) return {venv_state::missing, "no " + python};
  const auto stamp = read_stamp(spec);
  if (stamp.empty()) {
    return {venv_state::stale, "no stamp " + stamp_path(spec) + " (not synced by pyvisor)"};
  }
  if (stamp_value(stamp, "base") != base_hash(spec)) {
    return {venv_state::stale, "python or system_site_packages changed"};
  }
  if (stamp_value(stamp, "requirements") != requirements_hash(spec)) {
    return {venv_state::stale, "requirements changed"};
  }
  return {venv_state::up_to_date, {}};
}

expected<void> sync_venv(const venv_spec& spec, std::string_view name,
                         const venv_progress& progress) {
  const std::string label = "venv " + std::string(name.empty() ? spec.path : name);
  const auto say = [&](const std::string& what) {
    if (progress) progress(label + ": " + what);
  };
  if (spec.path.empty()) return make_error(errc::config_error, label + ": the venv has no path");
  const venv_state state = check_venv(spec);
  if (state.kind == venv_state::up_to_date) {
    say("up to date");
    return {};
  }
  const auto stamp = read_stamp(spec);
  const bool recreate = state.kind == venv_state::stale &&
                        (stamp.empty() || stamp_value(stamp, "base") != base_hash(spec));
  if (state.kind == venv_state::missing || recreate) {
    std::vector<std::string> args{"-m", "venv"};
    if (recreate) args.push_back("--clear");
    if (spec.system_site_packages) args.push_back("--system-site-packages");
    args.push_back(spec.path);
    say(std::string(recreate ? "recreating " : "creating ") + spec.path);
    if (auto r = run_tool(spec.python, args, label, progress); !r) return r;
  }
  if (!spec.requirements.empty()) {
    const std::size_t n = spec.requirements.size();
    say("installing " + std::to_string(n) + (n == 1 ? " requirement" : " requirements"));
    std::vector<std::string> args;
    std::string tool;
    if (!bp::search_path("uv").empty()) {
      tool = "uv";
      args = {"pip", "install", "--python", venv_python(spec)};
    } else {
      tool = venv_python(spec);
      args = {"-m", "pip", "install", "--disable-pip-version-check", "--no-input"};
    }
    args.insert(args.end(), spec.requirements.begin(), spec.requirements.end());
    if (auto r = run_tool(tool, args, label, progress); !r) return r;
  }
  if (auto r = write_stamp(spec); !r) return r;
  say("up to date");
  return {};
}

expected<void> sync_venv(const venv_spec& spec, const venv_progress& progress) {
  return sync_venv(spec, {}, progress);
}

std::string venv_fix_hint(const std::string& config_path) {
  return "run `pyvisor env sync " + (config_path.empty() ? std::string("CONFIG") : config_path) +
         "` to create or update it";
}

} // namespace pyvisor
