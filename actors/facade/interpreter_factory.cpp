#include "pyvisor/runtime.hpp"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <cstdlib>
#include <link.h>
#include <unistd.h>

#include "facade/runtime_impl.hpp"
#include "interpreter/interpreter_actor.hpp"
#include "process/sandbox.hpp"
#include "process/sandbox_support.hpp"
#include "process/spawn.hpp"

extern char** environ;

// Where the runner is (root CMakeLists.txt): the source tree's copy (used only by binaries inside
// the build tree), the install location recorded at configure time, the runner's path relative
// to the installed library's and programs' directories (GNUInstallDirs), and where the Debian
// package puts it (cmake/Packaging.cmake; "" when it is the recorded install location).
#ifndef PYVISOR_SOURCE_RUNNER_DIR
#define PYVISOR_SOURCE_RUNNER_DIR ""
#endif
#ifndef PYVISOR_BUILD_DIR
#define PYVISOR_BUILD_DIR ""
#endif
#ifndef PYVISOR_INSTALL_RUNNER_DIR
#define PYVISOR_INSTALL_RUNNER_DIR ""
#endif
#ifndef PYVISOR_RUNNER_FROM_LIBDIR
#define PYVISOR_RUNNER_FROM_LIBDIR "../share/pyvisor/python"
#endif
#ifndef PYVISOR_RUNNER_FROM_BINDIR
#define PYVISOR_RUNNER_FROM_BINDIR "../share/pyvisor/python"
#endif
#ifndef PYVISOR_PACKAGE_RUNNER_DIR
#define PYVISOR_PACKAGE_RUNNER_DIR ""
#endif

namespace pyvisor {

namespace {

bool usable_runner_dir(const std::string& d) {
  return !d.empty() && ::access((d + "/pyvisor/_runner.py").c_str(), R_OK) == 0;
}

std::string real_path(const std::string& p) {
  char buf[PATH_MAX];
  return !p.empty() && ::realpath(p.c_str(), buf) != nullptr ? std::string{buf} : std::string{};
}

struct object_search {
  std::uintptr_t addr = 0;
  std::string file;  // empty: not found
  bool main_program = false;
};

/// The loaded object (libpyvisor.so, or the program libpyvisor.a was linked into) whose
/// segments contain `s->addr`.
int find_object(dl_phdr_info* info, std::size_t, void* data) {
  auto* s = static_cast<object_search*>(data);
  for (int i = 0; i < info->dlpi_phnum; ++i) {
    const auto& ph = info->dlpi_phdr[i];
    if (ph.p_type != PT_LOAD)
      continue;
    auto begin = static_cast<std::uintptr_t>(info->dlpi_addr + ph.p_vaddr);
    if (s->addr >= begin && s->addr < begin + ph.p_memsz) {
      s->main_program = info->dlpi_name == nullptr || info->dlpi_name[0] == '\0';
      s->file = s->main_program ? std::string{} : std::string{info->dlpi_name};
      return 1;
    }
  }
  return 0;
}

/// The real path of the file holding this code, and whether it is the program itself (a static
/// libpyvisor) rather than a shared libpyvisor. A program file replaced while it runs (a package
/// upgrade) reads as "<path> (deleted)": its directory still tells where its runner is.
object_search own_binary() {
  object_search s;
  s.addr = reinterpret_cast<std::uintptr_t>(&find_object);
  ::dl_iterate_phdr(&find_object, &s);
  if (s.main_program) {
    char buf[PATH_MAX];
    auto n = ::readlink("/proc/self/exe", buf, sizeof buf - 1);
    std::string exe{buf, n > 0 ? static_cast<std::size_t>(n) : 0};
    constexpr char deleted[] = " (deleted)";
    if (exe.ends_with(deleted))
      exe.resize(exe.size() - (sizeof deleted - 1));
    auto slash = exe.rfind('/');
    auto dir = slash == std::string::npos ? std::string{} : real_path(exe.substr(0, slash));
    s.file = dir.empty() ? std::string{} : dir + exe.substr(slash);
  } else {
    s.file = real_path(s.file);
  }
  return s;
}

bool under(const std::string& path, const std::string& dir) {
  return !path.empty() && !dir.empty() && path.compare(0, dir.size() + 1, dir + "/") == 0;
}

/// The runner used when neither `runner_dir` nor a non-empty $PYVISOR_RUNNER_DIR names one (an
/// explicit one is used as given: a wrong one is reported, never silently replaced). In order:
///  1. the installed copy next to the file holding this code: `<bindir>/../share/pyvisor/python`
///     from a program (static libpyvisor), `<libdir>/../share/...` from a shared libpyvisor, so
///     a moved prefix or an unpacked package uses its own copy wherever it lies — even below the
///     build directory (CPack's staging tree, a test's scratch root);
///  2. the source tree's `python/` when that file is inside this build tree (no copy next to it:
///     a program or library built here and not installed);
///  3. the configured install location, then the Debian package's (a program elsewhere linked
///     with an installed static libpyvisor has only these). Never the source tree.
std::string default_runner_dir() {
  if (const char* e = std::getenv("PYVISOR_RUNNER_DIR"); e != nullptr && *e != '\0')
    return e;
  auto self = own_binary();
  if (auto slash = self.file.rfind('/'); slash != std::string::npos) {
    auto rel = self.main_program ? PYVISOR_RUNNER_FROM_BINDIR : PYVISOR_RUNNER_FROM_LIBDIR;
    if (auto d = real_path(self.file.substr(0, slash) + "/" + rel); usable_runner_dir(d))
      return d;
  }
  if (under(self.file, real_path(PYVISOR_BUILD_DIR)) &&
      usable_runner_dir(PYVISOR_SOURCE_RUNNER_DIR))
    return PYVISOR_SOURCE_RUNNER_DIR;
  for (const char* d : {PYVISOR_INSTALL_RUNNER_DIR, PYVISOR_PACKAGE_RUNNER_DIR})
    if (usable_runner_dir(d))
      return d;
  return PYVISOR_INSTALL_RUNNER_DIR;
}

// The runner's entry: put its directory first on sys.path (isolated mode adds none), then run.
constexpr const char* boot_code =
  "import sys;sys.path.insert(0,sys.argv[1]);from pyvisor._runner import main;main()";
constexpr const char* fork_server_boot_code =
  "import sys;sys.path.insert(0,sys.argv[1]);from pyvisor._fork_server import serve;serve()";

constexpr std::size_t two_mib = std::size_t{2} << 20;

/// The size of each shared-memory area of an interpreter's processes; 0: none.
std::size_t shared_memory_size(const interpreter_options& o) {
  if (o.shared_memory_threshold == 0 || o.transport != transport::fds)
    return 0;
  std::size_t s = o.shared_memory_bytes != 0
                    ? (o.shared_memory_bytes + two_mib - 1) / two_mib * two_mib
                    : std::min<std::size_t>(2 * o.max_frame_bytes, std::size_t{1} << 30);
  // The areas count against an address-space limit (RLIMIT_AS): only when asked for.
  if (o.shared_memory_bytes == 0 && o.isolation.limits.memory)
    return 0;
  s = s / two_mib * two_mib;
  return s >= o.shared_memory_threshold ? s : 0;
}

} // namespace

std::optional<error> check_interpreter_options(const interpreter_options& opts) {
  if (opts.max_frame_bytes < 1024 || opts.max_frame_bytes > (std::size_t{1} << 31))
    return make_error(errc::config_error, "max_frame_bytes must be between 1 KiB and 2 GiB");
  if (opts.shared_memory_bytes > (std::size_t{16} << 30))
    return make_error(errc::config_error, "shared_memory_bytes must be at most 16 GiB");
  if (!opts.busy_limits.disabled &&
      (opts.busy_limits.high_water == 0 || opts.busy_limits.max_inflight == 0 ||
       opts.busy_limits.low_water > opts.busy_limits.high_water))
    return make_error(errc::config_error,
                      "busy_limits: high_water and max_inflight must be positive and low_water <= "
                      "high_water (or set disabled)");
  if (opts.init_script_timeout.count() <= 0)
    return make_error(errc::config_error,
                      "init_script_timeout must be positive or pyvisor::forever");
  if (opts.default_timeout.count() <= 0)
    return make_error(errc::config_error, "default_timeout must be positive or pyvisor::forever");
  if (opts.heartbeat.interval != forever &&
      (opts.heartbeat.interval.count() <= 0 || opts.heartbeat.timeout.count() <= 0))
    return make_error(errc::config_error,
                      "heartbeat: interval and timeout must be positive (interval forever: off)");
  if (opts.heartbeat.interval != forever && opts.transport != transport::fds)
    return make_error(errc::config_error, "heartbeat needs the fds transport");
  if (opts.interrupt.kill_after.count() < 0 || opts.interrupt.grace.count() < 0 ||
      opts.shutdown.graceful.count() < 0 || opts.shutdown.terminate.count() < 0)
    return make_error(errc::config_error,
                      "interrupt and shutdown durations must not be negative");
  for (auto& [k, v] : opts.environment)
    if (k.empty() || k.find('=') != std::string::npos)
      return make_error(errc::config_error, "invalid environment variable name '" + k + "'");
  if (auto iso = process::check_isolation(opts.isolation); !iso)
    return iso.error();
  if (opts.spawn == spawn_mode::fork_server) {
    if (opts.transport != transport::fds)
      return make_error(errc::config_error, "spawn = fork_server needs the fds transport");
    if (opts.isolation.sandbox.kind == sandbox_kind::bwrap)
      return make_error(errc::config_error,
                        "spawn = fork_server does not work in a bwrap sandbox (use cold)");
  }
  for (auto& m : opts.preload)
    if (m.empty() || m.find(',') != std::string::npos || m.find('\0') != std::string::npos)
      return make_error(errc::config_error, "invalid preload module name '" + m + "'");
  return std::nullopt;
}

expected<std::shared_ptr<detail::interpreter_shared>> runtime::impl::make_interpreter(
  interpreter_options opts, caf::actor supervisor) {
  {
    std::lock_guard<std::mutex> g{mu};
    if (shut_down)
      return make_error(errc::shutting_down, "the runtime is shutting down");
  }
  if (auto e = check_interpreter_options(opts))
    return *e;
  auto runner_dir = opts.runner_dir.empty() ? default_runner_dir() : opts.runner_dir;
  if (!usable_runner_dir(runner_dir))
    return make_error(errc::config_error,
                      "runner not found: no pyvisor/_runner.py in '" + runner_dir +
                        "' (set runner_dir or PYVISOR_RUNNER_DIR)");

  process::spawn_request req;
  if (opts.launcher.empty()) {
    auto py = resolver.resolve(opts.python);
    if (!py)
      return std::move(py).error();
    req.argv.push_back(std::move(*py));
  } else {
    auto exe = process::find_executable(opts.launcher[0]);
    if (exe.empty())
      return make_error(errc::spawn_failed,
                        "launcher '" + opts.launcher[0] + "' not found or not executable");
    if (exe[0] != '/') {
      char buf[4096];
      if (::getcwd(buf, sizeof buf))
        exe = std::string{buf} + "/" + exe;
    }
    req.argv.push_back(exe);
    req.argv.insert(req.argv.end(), opts.launcher.begin() + 1, opts.launcher.end());
    req.argv.push_back(opts.python);  // as given: the launcher's side resolves it
  }
  req.argv.insert(req.argv.end(), opts.args.begin(), opts.args.end());
  if (opts.isolated)
    req.argv.emplace_back("-I");
  if (opts.no_site)
    req.argv.emplace_back("-S");
  // Everything before `-c` is the interpreter's command (shared with a fork server's
  // template); what follows the runner directory is this interpreter's.
  auto python_command = req.argv;
  std::vector<std::string> runner_args{"--transport",
                                       opts.transport == transport::stdio ? "stdio" : "fds",
                                       "--max-frame-bytes", std::to_string(opts.max_frame_bytes)};
  auto add = [&](std::initializer_list<std::string> more) {
    runner_args.insert(runner_args.end(), more);
  };
  if (!opts.label.empty())
    add({"--label", opts.label});
  if (opts.transport == transport::fds)
    add({"--interrupt-fd", "5", "--dump-fd", "6"});
  if (opts.transport == transport::fds && opts.heartbeat.interval != forever)
    add({"--heartbeat-ms",
         std::to_string(std::max<std::int64_t>(opts.heartbeat.interval.count() / 2, 1))});
  // The runner applies the same busy limits to its side (docs/protocol.md, flow control).
  if (opts.busy_limits.disabled) {
    add({"--high-water", "0"});
  } else {
    add({"--high-water", std::to_string(opts.busy_limits.high_water), "--low-water",
         std::to_string(std::min(opts.busy_limits.low_water, opts.busy_limits.high_water)),
         "--max-inflight", std::to_string(std::max<std::size_t>(opts.busy_limits.max_inflight, 1))});
  }
  std::size_t shm = shared_memory_size(opts);
  if (shm > 0)
    add({"--shm-fd", "8", "--shm-bytes", std::to_string(shm), "--shm-threshold",
         std::to_string(opts.shared_memory_threshold)});
  add({"--eager-tasks", opts.eager_tasks ? "on" : "off"});
  add({"--forward-logging", opts.forward_logging ? "on" : "off"});
  req.argv.insert(req.argv.end(), {"-c", boot_code, runner_dir});
  req.argv.insert(req.argv.end(), runner_args.begin(), runner_args.end());
  req.stdio_transport = opts.transport == transport::stdio;
  req.shm_bytes = shm;
  req.cwd = opts.cwd;
  // Isolation (checked above): applied by spawn between fork and exec; with bwrap the command
  // runs inside the sandbox, which must also see the Python installation and the runner.
  req.isolation = opts.isolation;
  if (opts.isolation.sandbox.kind == sandbox_kind::bwrap) {
    auto needed = opts.launcher.empty() ? process::python_paths(req.argv[0], opts.python)
                                        : std::vector<std::string>{};
    needed.push_back(runner_dir);             // as Python is told it
    needed.push_back(real_path(runner_dir));  // where it really is ("" when unresolvable: skipped)
    req.argv = process::bwrap_command(opts.isolation, needed, std::move(req.argv));
  }

  for (char** e = environ; opts.inherit_environment && *e != nullptr; ++e) {
    std::string_view kv{*e};
    auto name = kv.substr(0, kv.find('='));
    if (!opts.inherit_only.empty() &&
        std::find(opts.inherit_only.begin(), opts.inherit_only.end(), name) ==
          opts.inherit_only.end())
      continue;
    bool overridden = std::any_of(opts.environment.begin(), opts.environment.end(),
                                  [&](auto& p) { return p.first == name; });
    if (!overridden)
      req.env.emplace_back(kv);
  }
  for (auto& [k, v] : opts.environment)
    req.env.push_back(k + "=" + v);

  std::shared_ptr<process::fork_server> fork;
  if (opts.spawn == spawn_mode::fork_server) {
    process::spawn_request tmpl = req;
    tmpl.argv = std::move(python_command);
    tmpl.shm_bytes = 0;  // each worker gets its own
    std::string preload;
    for (auto& m : opts.preload)
      preload += (preload.empty() ? "" : ",") + m;
    tmpl.argv.insert(tmpl.argv.end(), {"-c", fork_server_boot_code, runner_dir, "--control-fd",
                                       "7", "--preload", preload});
    // RLIMIT_CPU is per process and the template lives long: each worker sets it for itself
    // (its CPU time starts from zero at the fork), the template runs without it.
    if (auto cpu = tmpl.isolation.limits.cpu_seconds) {
      tmpl.argv.insert(tmpl.argv.end(), {"--worker-cpu-seconds", std::to_string(*cpu)});
      tmpl.isolation.limits.cpu_seconds.reset();
    }
    // The template's own output (a failed preload import, say) goes to the runtime's log as
    // the stderr of "fork-server".
    std::weak_ptr<impl> weak = shared_from_this();
    fork = forks.get(tmpl, [weak](int pid, std::string_view line) {
      if (auto rt = weak.lock())
        rt->log(log_record{"fork-server", pid, log_source::python_stderr, line, 0});
    });
  }

  auto shared = std::make_shared<detail::interpreter_shared>();
  shared->rt = shared_from_this();
  std::weak_ptr<impl> weak_rt = shared_from_this();
  log_sink sink = [weak_rt](const log_record& r) {
    if (auto rt = weak_rt.lock())
      rt->log(r);
  };
  interp::request_table::config tcfg;
  tcfg.busy = opts.busy_limits;
  tcfg.max_frame_bytes = opts.max_frame_bytes;
  tcfg.shared_from = shm > 0 ? std::max<std::size_t>(opts.shared_memory_threshold, 1) : 0;
  tcfg.label = opts.label;
  shared->table = interp::request_table::make(*loop, std::move(tcfg));
  shared->st = std::make_shared<interp::status>();
  shared->opts = opts;
  interp::actor_args args;
  args.table = shared->table;
  args.st = shared->st;
  args.loop = loop.get();
  args.hosts = hosts;
  args.log = sink;
  args.timers = timers;
  args.spawn = std::move(req);
  args.fork = std::move(fork);
  args.fork_args = std::move(runner_args);
  args.opts = std::move(opts);
  args.supervisor = supervisor.address();
  args.supervised = static_cast<bool>(supervisor);
  shared->supervised = static_cast<bool>(supervisor);
  {
    std::lock_guard<std::mutex> g{mu};
    if (shut_down)
      return make_error(errc::shutting_down, "the runtime is shutting down");
    shared->actor = interp::spawn_interpreter_actor(*sys, std::move(args));
    // Forget interpreters that ended, then remember this one for the shutdown.
    live.erase(std::remove_if(live.begin(), live.end(),
                              [](auto& p) {
                                auto st = p.first.lock();
                                return !st || st->get() == interpreter_state::stopped;
                              }),
               live.end());
    live.emplace_back(shared->st, shared->actor.address());
  }
  return shared;
}

} // namespace pyvisor
