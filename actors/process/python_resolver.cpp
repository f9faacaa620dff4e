#include "process/python_resolver.hpp"

#include <cerrno>
#include <chrono>
#include <climits>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <poll.h>
#include <spawn.h>
#include <sys/wait.h>
#include <sys/stat.h>
#include <unistd.h>

extern char** environ;

namespace pyvisor::process {

namespace {

bool is_script(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return false;
  char head[2] = {0, 0};
  auto n = ::read(fd, head, 2);
  ::close(fd);
  return n == 2 && head[0] == '#' && head[1] == '!';
}

std::string canonical(const std::string& path) {
  char buf[PATH_MAX];
  if (::realpath(path.c_str(), buf) == nullptr)
    return path;
  return buf;
}

// Runs `exe -c 'import sys; sys.stdout.write(sys.executable)'` and returns its output, or ""
// after 30 s. The probe is this function's own child: it reaps exactly that pid.
std::string probe_executable(const std::string& exe) {
  int p[2];
  if (::pipe2(p, O_CLOEXEC) != 0)
    return {};
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
  posix_spawnattr_t at;
  posix_spawnattr_init(&at);
  sigset_t none, def;
  sigemptyset(&none);
  sigemptyset(&def);
  sigaddset(&def, SIGPIPE);
  posix_spawnattr_setsigmask(&at, &none);
  posix_spawnattr_setsigdefault(&at, &def);
  posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  const char* argv[] = {exe.c_str(), "-c", "import sys; sys.stdout.write(sys.executable or '')",
                        nullptr};
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, exe.c_str(), &fa, &at, const_cast<char**>(argv), environ);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&at);
  ::close(p[1]);
  std::string out;
  if (rc == 0) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    char buf[4096];
    for (;;) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
                    deadline - std::chrono::steady_clock::now())
                    .count();
      if (left <= 0) {
        ::kill(pid, SIGKILL);
        out.clear();
        break;
      }
      pollfd pfd{p[0], POLLIN, 0};
      if (::poll(&pfd, 1, static_cast<int>(left)) < 0 && errno != EINTR)
        break;
      auto n = ::read(p[0], buf, sizeof buf);
      if (n > 0)
        out.append(buf, static_cast<std::size_t>(n));
      else if (n == 0 || (errno != EINTR && errno != EAGAIN))
        break;
    }
    int status = 0;
    while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      out.clear();
  }
  ::close(p[0]);
  return out;
}

/// `exe` made absolute (symlinks kept) when it lives in a venv's bin/ (a pyvenv.cfg one level
/// above), else "".
std::string in_venv(const std::string& exe) {
  std::string abs = exe;
  if (abs[0] != '/') {
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd) == nullptr)
      return {};
    abs = std::string{cwd} + "/" + abs;
  }
  auto slash = abs.rfind('/');
  auto bin = abs.substr(0, slash);
  auto up = bin.substr(0, bin.rfind('/'));
  struct stat st;
  if (up.empty() || ::stat((up + "/pyvenv.cfg").c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return {};
  return abs;
}

} // namespace

std::string find_executable(const std::string& name) {
  if (name.empty())
    return {};
  if (name.find('/') != std::string::npos)
    return ::access(name.c_str(), X_OK) == 0 ? name : std::string{};
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/local/bin:/usr/bin:/bin";
  std::size_t start = 0;
  for (;;) {
    auto end = dirs.find(':', start);
    auto dir = dirs.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (dir.empty())
      dir = ".";
    auto candidate = dir + "/" + name;
    if (::access(candidate.c_str(), X_OK) == 0)
      return candidate;
    if (end == std::string::npos)
      return {};
    start = end + 1;
  }
}

expected<std::string> python_resolver::resolve(const std::string& python) {
  {
    std::lock_guard<std::mutex> g{mu_};
    if (auto i = cache_.find(python); i != cache_.end())
      return i->second;
  }
  auto found = find_executable(python);
  if (found.empty())
    return make_error(errc::spawn_failed,
                      "python executable '" + python + "' not found or not executable" +
                        (python.find('/') == std::string::npos ? " (searched PATH)" : ""));
  // A venv's python is a symlink whose own path matters: Python finds the venv through the
  // pyvenv.cfg next to its bin/ directory. Keep that path (made absolute), unresolved.
  if (auto venv = in_venv(found); !venv.empty()) {
    std::lock_guard<std::mutex> g{mu_};
    cache_[python] = venv;
    return venv;
  }
  auto real = canonical(found);
  if (is_script(real)) {
    auto probed = probe_executable(real);
    if (!probed.empty() && probed[0] == '/' && ::access(probed.c_str(), X_OK) == 0)
      real = canonical(probed);
  }
  if (real[0] != '/')
    real = canonical(real);
  std::lock_guard<std::mutex> g{mu_};
  cache_[python] = real;
  return real;
}

} // namespace pyvisor::process
