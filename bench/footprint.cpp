// Footprint (see bench/README.md): what one idle interpreter costs, against the bare Python floor.
//
// - floor_python_start_ms / floor_python_msgpack_start_ms: fork + exec + wait of
//   `python -I -c pass` (and `-c "import msgpack"`, left out when msgpack is not importable).
// - start_to_ready_ms: rt.spawn_interpreter(opts) until it returns (ready), fresh each time.
// - python_pss_per_idle_mib / guard_pss_per_idle_kib: Pss (/proc/PID/smaps_rollup) of the Python
//   process (handle.os_pid()) and of its guard (the Python process's parent) with K idle
//   interpreters alive; floor_python_pss_mib: the same for K bare `python -I -c` processes that
//   import msgpack and block reading a pipe on stdin. Medians.
// - host_bytes_per_idle / host_fds_per_idle: heap in use (mallinfo2 uordblks + hblkhd) and
//   /proc/self/fd entries of this process, before and after M idle interpreters, / M.
// - start_200_s / start_200_sequential_s: wall time until N interpreters are all ready, spawned
//   with blocking spawn_interpreter from 8 threads / from one thread.
// - *_fork_*: start to ready, Pss and 200 at once with spawn_mode::fork_server (forks of a warm
//   template; fork_template_pss_mib: the template's own Pss, shared by its workers).
// Prints one JSON object; errors go to stderr with exit code 1, and no process is left behind.
#include <fcntl.h>
#include <malloc.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <latch>
#include <string>
#include <thread>
#include <vector>

#include "pyvisor/runtime.hpp"

#include "bench_common.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_footprint";
constexpr int start_threads = 8;

struct options {
  common_options c;
  long long iters = -1;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_footprint [--iters N] <common>\n"
               "  defaults: --iters 20 (--quick: 5); idle counts 10 / 50, start 200\n"
               "            (--quick: 4 / 10, start 20)\n"
               "%s  Prints one JSON object.\n",
               common_usage);
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return percentile(v, 0.50);
}

// ---- bare Python processes -------------------------------------------------------------------

// fork + exec of `argv` with stdin/stdout on `in_fd`/`out_fd` (-1: /dev/null); -1 on error.
pid_t start_child(const std::vector<std::string>& argv, int in_fd, int out_fd) {
  std::vector<char*> args;
  for (const auto& a : argv)
    args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const int null_fd = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null_fd < 0)
    return -1;
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(in_fd >= 0 ? in_fd : null_fd, 0);
    ::dup2(out_fd >= 0 ? out_fd : null_fd, 1);
    ::execvp(args[0], args.data());
    ::_exit(127);
  }
  ::close(null_fd);
  return pid;
}

// Waits for `pid`; true when it exited with status 0.
bool reap(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0)
    if (errno != EINTR)
      return false;
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

bool run_ok(const std::vector<std::string>& argv) {
  const pid_t pid = start_child(argv, -1, -1);
  return pid > 0 && reap(pid);
}

// p50 of fork+exec+wait of `argv`, in ms; negative on error.
double start_floor_ms(const std::vector<std::string>& argv, long long iters) {
  std::vector<double> ms;
  for (long long i = 0; i < iters; ++i) {
    const auto t0 = clock_type::now();
    if (!run_ok(argv))
      return -1;
    ms.push_back(us_since(t0, clock_type::now()) / 1e3);
  }
  return median(ms);
}

// Bare Python processes blocked on a stdin pipe; closing it ends them (the destructor does).
struct idle_floor {
  std::vector<pid_t> pids;
  std::vector<int> stdin_w;
  ~idle_floor() {
    for (int fd : stdin_w)
      ::close(fd);
    for (pid_t p : pids)
      reap(p);
  }
  // Starts one; returns once it has imported and is reading stdin.
  bool start(const std::string& python, bool msgpack) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0)
      return false;
    stdin_w.push_back(in[1]);
    if (::pipe2(out, O_CLOEXEC) != 0)
      return ::close(in[0]), false;
    std::string code = msgpack ? "import msgpack, sys\n" : "import sys\n";
    code += "sys.stdout.write('r'); sys.stdout.flush(); sys.stdin.read()";
    const pid_t pid = start_child({python, "-I", "-c", code}, in[0], out[1]);
    ::close(in[0]);
    ::close(out[1]);
    if (pid > 0)
      pids.push_back(pid);
    char c = 0;
    const bool ok = pid > 0 && ::read(out[0], &c, 1) == 1 && c == 'r';
    ::close(out[0]);
    return ok;
  }
};

// ---- /proc -----------------------------------------------------------------------------------

// The value (in kB) of the `key` line of a /proc file like smaps_rollup or status; -1 if absent.
double proc_field(const std::string& path, const std::string& key) {
  std::ifstream in{path};
  std::string line;
  while (std::getline(in, line))
    if (line.rfind(key, 0) == 0)
      return std::strtod(line.c_str() + key.size(), nullptr);
  return -1;
}

double pss_kib(int pid) {
  return proc_field("/proc/" + std::to_string(pid) + "/smaps_rollup", "Pss:");
}

int parent_of(int pid) {
  std::ifstream in{"/proc/" + std::to_string(pid) + "/stat"};
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  int ppid = -1;
  if (close == std::string::npos || std::sscanf(stat.c_str() + close + 1, " %*c %d", &ppid) != 1)
    return -1;
  return ppid;
}

long long heap_in_use() {
  const auto m = ::mallinfo2();
  return static_cast<long long>(m.uordblks + m.hblkhd);
}

long long open_fds() {
  return std::distance(std::filesystem::directory_iterator("/proc/self/fd"),
                       std::filesystem::directory_iterator{});
}

long long threads() {
  return static_cast<long long>(proc_field("/proc/self/status", "Threads:"));
}

// ---- interpreters ----------------------------------------------------------------------------

using handles = std::vector<pyvisor::interpreter>;

// Spawns `n` interpreters (each ready) into `out`; false (with a message) on error.
bool spawn_n(pyvisor::runtime& rt, const pyvisor::interpreter_options& io, long long n,
             handles& out) {
  for (long long i = 0; i < n; ++i) {
    auto py = spawn(prog, rt, io);
    if (!py)
      return false;
    out.push_back(std::move(*py));
  }
  return true;
}

// Stops every interpreter in `groups`, one thread per group; false (with a message) on error.
bool stop_all(std::vector<handles>& groups) {
  std::vector<std::thread> ts;
  std::vector<char> ok(groups.size(), 1);
  for (std::size_t g = 0; g < groups.size(); ++g)
    ts.emplace_back([&, g] {
      for (auto& py : groups[g])
        if (!stop(prog, py))
          ok[g] = 0;
      groups[g].clear();
    });
  for (auto& t : ts)
    t.join();
  return std::all_of(ok.begin(), ok.end(), [](char c) { return c != 0; });
}

// Spawns `count` interpreters from `nthreads` threads (blocking spawn_interpreter each); the wall
// time in seconds until all are ready, negative on error. Stops them all afterwards.
double start_many(pyvisor::runtime& rt, const pyvisor::interpreter_options& io, long long count,
                  int nthreads) {
  std::vector<handles> groups(static_cast<std::size_t>(nthreads));
  std::latch go{nthreads + 1};
  std::atomic<bool> failed{false};
  std::vector<std::thread> ts;
  for (int t = 0; t < nthreads; ++t)
    ts.emplace_back([&, t] {
      const long long share = count / nthreads + (t < count % nthreads ? 1 : 0);
      go.arrive_and_wait();
      if (!spawn_n(rt, io, share, groups[static_cast<std::size_t>(t)]))
        failed = true;
    });
  const auto t0 = clock_type::now();
  go.arrive_and_wait();
  for (auto& t : ts)
    t.join();
  const double s = us_since(t0, clock_type::now()) / 1e6;
  const bool stopped = stop_all(groups);
  return failed || !stopped ? -1 : s;
}

int run(const options& o) {
  const bool quick = o.c.quick;
  const long long pss_count = quick ? 4 : 10, host_count = quick ? 10 : 50;
  const long long start_count = quick ? 20 : 200;
  json_object j;
  j.str("bench", "footprint").str("python", o.c.python).integer("iters", o.iters);

  // Floors: bare Python, before the runtime exists.
  const bool has_msgpack = run_ok({o.c.python, "-I", "-c", "import msgpack"});
  struct floor_run {
    const char *key, *code;
  };
  for (auto [key, code] : {floor_run{"floor_python_start_ms", "pass"},
                           floor_run{"floor_python_msgpack_start_ms", "import msgpack"}}) {
    if (std::strcmp(code, "pass") != 0 && !has_msgpack)
      break;
    const double ms = start_floor_ms({o.c.python, "-I", "-c", code}, o.iters);
    if (ms < 0)
      return std::fprintf(stderr, "%s: %s -I -c '%s' failed\n", prog, o.c.python.c_str(), code), 1;
    j.num(key, ms);
  }
  j.boolean("msgpack", has_msgpack);
  {
    idle_floor fl;
    std::vector<double> mib;
    for (long long i = 0; i < pss_count; ++i)
      if (!fl.start(o.c.python, has_msgpack))
        return std::fprintf(stderr, "%s: an idle bare Python did not start\n", prog), 1;
    for (pid_t p : fl.pids)
      if (mib.push_back(pss_kib(p) / 1024); mib.back() <= 0)
        return std::fprintf(stderr, "%s: no Pss for bare Python %d\n", prog, p), 1;
    j.num("floor_python_pss_mib", median(mib));
  }

  pyvisor::runtime rt{pyvisor::runtime_options{.log = {}}};
  const auto io = interpreter_opts(o.c);

  // Spawn to ready, fresh each time.
  std::vector<double> ready_ms;
  std::string version;
  for (long long i = 0; i < o.iters; ++i) {
    const auto t0 = clock_type::now();
    auto py = spawn(prog, rt, io);
    const auto t1 = clock_type::now();
    if (!py)
      return 1;
    ready_ms.push_back(us_since(t0, t1) / 1e3);
    version = py->python_version();
    if (!stop(prog, *py))
      return 1;
  }
  j.str("python_version", version).num("start_to_ready_ms", median(ready_ms));

  // Pss of idle interpreters and of their guards.
  {
    std::vector<handles> idle(1);
    std::vector<double> py_mib, guard_kib;
    if (!spawn_n(rt, io, pss_count, idle[0]))
      return 1;
    for (auto& py : idle[0]) {
      const int pid = py.os_pid();
      const int guard = parent_of(pid);
      const double p = pss_kib(pid), g = guard > 0 ? pss_kib(guard) : -1;
      if (p <= 0 || g <= 0 || guard == ::getpid())
        return std::fprintf(stderr, "%s: no Pss for python %d / guard %d\n", prog, pid, guard), 1;
      py_mib.push_back(p / 1024);
      guard_kib.push_back(g);
    }
    if (!stop_all(idle))
      return 1;
    j.num("python_pss_per_idle_mib", median(py_mib))
      .num("guard_pss_per_idle_kib", median(guard_kib));
  }

  // What M idle interpreters cost this process.
  {
    std::vector<handles> idle(1);
    idle[0].reserve(static_cast<std::size_t>(host_count));
    const long long bytes0 = heap_in_use(), fds0 = open_fds(), threads0 = threads();
    if (!spawn_n(rt, io, host_count, idle[0]))
      return 1;
    const long long bytes1 = heap_in_use(), fds1 = open_fds(), threads1 = threads();
    if (!stop_all(idle))
      return 1;
    const auto m = static_cast<double>(host_count);
    j.num("host_bytes_per_idle", static_cast<double>(bytes1 - bytes0) / m, 0)
      .num("host_fds_per_idle", static_cast<double>(fds1 - fds0) / m, 2)
      .integer("host_threads_before", threads0)
      .integer("host_threads_after", threads1);
  }

  // Many at once.
  const double parallel_s = start_many(rt, io, start_count, start_threads);
  if (parallel_s < 0)
    return 1;
  const double sequential_s = start_many(rt, io, start_count, 1);
  if (sequential_s < 0)
    return 1;

  // The same with the fork server: start to ready, Pss of idle workers (and of the template
  // they share), 200 at once. The template is started first and not counted.
  auto fio = io;
  fio.spawn = pyvisor::spawn_mode::fork_server;
  {
    auto warm = spawn(prog, rt, fio);
    if (!warm)
      return 1;
    if (!stop(prog, *warm))
      return 1;
  }
  std::vector<double> fork_ready_ms;
  for (long long i = 0; i < o.iters; ++i) {
    const auto t0 = clock_type::now();
    auto py = spawn(prog, rt, fio);
    const auto t1 = clock_type::now();
    if (!py)
      return 1;
    fork_ready_ms.push_back(us_since(t0, t1) / 1e3);
    if (!stop(prog, *py))
      return 1;
  }
  {
    std::vector<handles> idle(1);
    std::vector<double> py_mib;
    if (!spawn_n(rt, fio, pss_count, idle[0]))
      return 1;
    double template_mib = 0;
    for (auto& py : idle[0]) {
      const int pid = py.os_pid();
      const double p = pss_kib(pid);
      if (p <= 0)
        return std::fprintf(stderr, "%s: no Pss for forked python %d\n", prog, pid), 1;
      py_mib.push_back(p / 1024);
      template_mib = pss_kib(parent_of(pid)) / 1024;
    }
    if (!stop_all(idle))
      return 1;
    j.num("python_pss_per_idle_fork_mib", median(py_mib)).num("fork_template_pss_mib", template_mib);
  }
  const double fork_parallel_s = start_many(rt, fio, start_count, start_threads);
  if (fork_parallel_s < 0)
    return 1;
  const double fork_sequential_s = start_many(rt, fio, start_count, 1);
  if (fork_sequential_s < 0)
    return 1;
  j.num("start_to_ready_fork_ms", median(fork_ready_ms))
    .num("start_200_fork_s", fork_parallel_s)
    .num("start_200_fork_sequential_s", fork_sequential_s);

  j.num("start_200_s", parallel_s)
    .num("start_200_sequential_s", sequential_s)
    .integer("pss_count", pss_count)
    .integer("host_count", host_count)
    .integer("start_count", start_count)
    .integer("start_threads", start_threads)
    .print();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  return bench_main(prog, argc, argv, o.c, {{"--iters", &o.iters, 5, 20}}, usage,
                    [&] { return run(o); });
}
