#include "process/sandbox.hpp"

#include <climits>
#include <cstdlib>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>

#include "process/isolation.hpp"
#include "process/sandbox_support.hpp"

namespace pyvisor::process {

namespace {

namespace fs = std::filesystem;

constexpr const char* system_dirs[] = {"/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/etc"};

bool under(const std::string& path, const std::string& dir) {
  return path == dir || (path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
                         path[dir.size()] == '/');
}

std::string normal(const std::string& p) {
  auto s = fs::path{p}.lexically_normal().string();
  while (s.size() > 1 && s.back() == '/')
    s.pop_back();
  return s;
}

std::string real(const std::string& p) {
  char buf[PATH_MAX];
  return ::realpath(p.c_str(), buf) != nullptr ? std::string{buf} : std::string{};
}

} // namespace

std::vector<std::string> python_paths(const std::string& resolved, const std::string& given) {
  std::vector<std::string> out;
  // <prefix>/bin/pythonX.Y -> <prefix>
  auto prefix = fs::path{resolved}.parent_path().parent_path();
  if (!prefix.empty() && prefix != "/")
    out.push_back(prefix.string());
  if (given.find('/') != std::string::npos) {
    std::error_code ec;
    auto venv = fs::absolute(fs::path{given}, ec).lexically_normal().parent_path().parent_path();
    if (!venv.empty() && venv != "/" && fs::exists(venv / "pyvenv.cfg", ec))
      out.push_back(venv.string());
  }
  return out;
}

std::vector<std::string> bwrap_command(const isolation& iso, const std::vector<std::string>& needed,
                                       std::vector<std::string> inner) {
  const auto& sb = iso.sandbox;
  const auto& support = host_sandbox_support();
  std::vector<std::string> a{support.bwrap_path, "--die-with-parent", "--unshare-pid",
                             "--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try",
                             "--cap-drop", "ALL"};
  if (!sb.network)
    a.emplace_back("--unshare-net");
  std::vector<std::string> bound;
  for (const char* d : system_dirs) {
    struct stat st;
    if (::lstat(d, &st) != 0)
      continue;
    if (S_ISLNK(st.st_mode)) {
      char target[PATH_MAX];
      auto n = ::readlink(d, target, sizeof target - 1);
      if (n <= 0)
        continue;
      a.insert(a.end(), {"--symlink", std::string(target, static_cast<std::size_t>(n)), d});
      if (auto r = real(d); !r.empty())
        bound.push_back(r);
    } else if (S_ISDIR(st.st_mode)) {
      a.insert(a.end(), {"--ro-bind", d, d});
      bound.emplace_back(d);
    }
  }
  a.insert(a.end(), {"--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"});
  // Extra read-only paths after the /tmp tmpfs (one of them may be below /tmp).
  auto visible = [&bound](const std::string& p) {
    for (const auto& b : bound)
      if (under(p, b))
        return true;
    return false;
  };
  std::vector<std::string> extra;
  for (const auto& list : {needed, sb.read_only})
    for (const auto& p : list)
      if (!p.empty() && p[0] == '/')
        extra.push_back(normal(p));
  for (const auto& p : extra) {
    if (visible(p) || under(p, "/proc") || under(p, "/dev"))
      continue;
    a.insert(a.end(), {"--ro-bind", p, p});
    bound.push_back(p);
  }
  if (!sb.work_dir.empty()) {
    auto w = normal(sb.work_dir);
    a.insert(a.end(), {"--bind", w, w, "--chdir", w});
  }
  if (sb.seccomp)
    a.insert(a.end(), {"--seccomp", std::to_string(sandbox_seccomp_fd)});
  a.emplace_back("--");
  a.push_back(support.setsid_path);
  a.insert(a.end(), std::make_move_iterator(inner.begin()), std::make_move_iterator(inner.end()));
  return a;
}

} // namespace pyvisor::process
