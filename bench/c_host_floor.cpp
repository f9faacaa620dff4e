// The honest floor (see bench/README.md): what ANY out-of-process Python runtime over pipes pays.
//
// A C++ host with no pyvisor code runs `python -I -B py_min_loop.py` on two pipes (child fd 3 =
// host -> python, fd 4 = python -> host) with pyvisor's own frames: [0, id, "eval", {"code":
// "return 1"}] encoded with msgpack-cxx, each reply decoded with msgpack::unpack and checked to be
// [1, id, "eval", {"ok": 1}]. The child is a blocking read / cached compile / call / write loop.
// 1. Serial: clock around encode + write + read + decode (--warmup, then --iters): p50/p99/mean,
//    and CPU per request: host getrusage(RUSAGE_SELF), Python /proc/<pid>/schedstat (ns; the
//    utime + stime ticks of /proc/<pid>/stat when schedstat reads 0).
// 2. Pipelined: D requests in flight (--depths), the window topped up after each read; child
//    mode `batched` (one write for all replies of a read, the host writes its new frames in one
//    write too) or `per_request` (one write per frame on both sides); one child per mode. Round
//    trips/s over --count replies after --count-warmup.
// Prints one JSON object; errors on stderr, exit 1 (2: usage). Pin with `taskset -c 0`.

#include <fcntl.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <tuple>

#include <msgpack.hpp>

#include "bench_common.hpp"

namespace {

using pyvisor_bench::clock_type;
using pyvisor_bench::us_since;

constexpr const char* prog = "bench_c_host_floor";
constexpr long max_depth = 1024;  // depth * frame size stays far below the 64 KiB pipe buffer

struct options {
  long long iters = -1, warmup = -1, count = -1, count_warmup = -1;
  bool quick = false;
  std::string python = "/usr/bin/python3", script, runner_dir;
  std::vector<long long> depths{1, 16, 256};
};

void usage(std::FILE* f) {
  std::fprintf(f,
    "usage: bench_c_host_floor [--iters N] [--warmup N] [--count N] [--count-warmup N]\n"
    "         [--depths D,D,..] [--quick] [--python PATH] [--script PATH] [--runner-dir DIR]\n"
    "  defaults: --iters 20000 --warmup 2000 --count 100000 --count-warmup 10000\n"
    "            --depths 1,16,256 (each 1..%ld) --python /usr/bin/python3\n"
    "            --script py_min_loop.py next to this binary\n"
    "  --quick:  --iters 5000 --warmup 500 --count 20000 --count-warmup 2000\n"
    "  --runner-dir: pyvisor's python/ dir, for the child's codec when the msgpack C extension\n"
    "            is missing (default: py_min_loop.py looks for it). Prints one JSON object.\n",
    max_depth);
}

[[noreturn]] void fail(const std::string& what) { throw std::runtime_error(what); }
std::string text(const msgpack::object& o) {
  std::ostringstream s;
  s << o;
  return s.str();
}
[[noreturn]] void fail_errno(const std::string& what) { fail(what + ": " + std::strerror(errno)); }

void write_all(int fd, const char* p, std::size_t n) {
  while (n > 0) {
    const ssize_t w = write(fd, p, n);
    if (w < 0 && errno != EINTR)
      fail_errno("write to the child");
    if (w > 0)
      p += w, n -= static_cast<std::size_t>(w);
  }
}

// The Python child on two pipes, and the frames it sends. The destructor kills and reaps a child
// that finish() did not.
class child {
public:
  child(const options& o, const char* mode) : buf_(256 * 1024) {
    int in[2], out[2];  // in: host -> python (child fd 3), out: python -> host (child fd 4)
    if (pipe2(in, O_CLOEXEC) != 0)
      fail_errno("pipe2");
    wfd = in[1];
    if (pipe2(out, O_CLOEXEC) != 0)
      close(in[0]), close_fds(), fail_errno("pipe2");
    rfd = out[0];
    std::vector<std::string> args{o.python, "-I", "-B", o.script, "--mode", mode};
    if (!o.runner_dir.empty())
      args.insert(args.end(), {"--runner-dir", o.runner_dir});
    std::vector<char*> argv;
    for (auto& a : args)
      argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string exec_failed = std::string(prog) + ": cannot execute " + o.python + "\n";
    std::fflush(nullptr);
    pid = fork();
    if (pid == 0) {
      // Async-signal-safe calls only. The ends move above 4 first so that the dup2()s onto 3 and
      // 4 cannot clobber one another; dup2 clears O_CLOEXEC on 0, 1, 3 and 4; stdout -> stderr.
      const int r = fcntl(in[0], F_DUPFD_CLOEXEC, 5), w = fcntl(out[1], F_DUPFD_CLOEXEC, 5);
      const int null = open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (r >= 0 && w >= 0 && null >= 0 && dup2(null, 0) == 0 && dup2(2, 1) == 1 &&
          dup2(r, 3) == 3 && dup2(w, 4) == 4) {
        close_range(5, ~0U, 0);  // everything else
        execv(argv[0], argv.data());
      }
      if (write(2, exec_failed.data(), exec_failed.size()) < 0) {}
      _exit(127);
    }
    const int fork_errno = errno;
    close(in[0]), close(out[1]);
    if (pid < 0)
      close_fds(), errno = fork_errno, fail_errno("fork");
  }
  child(const child&) = delete;
  child& operator=(const child&) = delete;
  ~child() {
    close_fds();
    if (pid > 0 && kill(pid, SIGKILL) == 0)
      while (waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {}
  }

  // EOF to the child, then reaps it; it must exit with 0.
  void finish() {
    close_fds();
    int st = 0;
    while (waitpid(pid, &st, 0) < 0)
      if (errno != EINTR)
        fail_errno("waitpid");
    pid = -1;
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
      fail("the python child failed (wait status " + std::to_string(st) + ")");
  }

  // One blocking read() of whatever the child wrote.
  void fill() {
    std::memmove(buf_.data(), buf_.data() + begin_, end_ - begin_);  // a partial frame, if any
    end_ -= begin_, begin_ = 0;
    if (buf_.size() - end_ < 64 * 1024)
      buf_.resize(buf_.size() * 2);
    ssize_t n;
    while ((n = read(rfd, buf_.data() + end_, buf_.size() - end_)) < 0 && errno == EINTR) {}
    if (n < 0)
      fail_errno("read from the child");
    if (n == 0)
      fail("the python child closed its pipe (exited?)");
    end_ += static_cast<std::size_t>(n);
  }
  // The next complete frame body already read, if any.
  bool next(const char*& body, std::size_t& size) {
    if (end_ - begin_ < 4)
      return false;
    const auto* p = reinterpret_cast<const unsigned char*>(buf_.data() + begin_);
    size = std::size_t{p[0]} << 24 | std::size_t{p[1]} << 16 | std::size_t{p[2]} << 8 | p[3];
    if (end_ - begin_ - 4 < size)
      return false;
    body = buf_.data() + begin_ + 4;
    begin_ += 4 + size;
    return true;
  }

  pid_t pid = -1;
  int wfd = -1, rfd = -1;

private:
  void close_fds() {
    for (int* fd : {&wfd, &rfd})
      if (*fd >= 0)
        close(*fd), *fd = -1;
  }
  std::vector<char> buf_;
  std::size_t begin_ = 0, end_ = 0;
};

// Appends one framed request [0, id, "eval", {"code": "return 1"}] to `sb`.
void append_request(msgpack::sbuffer& sb, std::uint64_t id) {
  static const char placeholder[4] = {};
  const std::size_t at = sb.size();
  sb.write(placeholder, 4);
  msgpack::packer<msgpack::sbuffer> pk(sb);
  pk.pack_array(4).pack(0).pack(id);
  pk.pack_str(4).pack_str_body("eval", 4);
  pk.pack_map(1).pack_str(4).pack_str_body("code", 4);
  pk.pack_str(8).pack_str_body("return 1", 8);
  const auto n = static_cast<std::uint32_t>(sb.size() - at - 4);
  char* p = sb.data() + at;
  p[0] = static_cast<char>(n >> 24), p[1] = static_cast<char>(n >> 16);
  p[2] = static_cast<char>(n >> 8), p[3] = static_cast<char>(n);
}

bool is_str(const msgpack::object& o, std::string_view s) {
  return o.type == msgpack::type::STR && std::string_view(o.via.str.ptr, o.via.str.size) == s;
}
bool is_uint(const msgpack::object& o, std::uint64_t v) {
  return o.type == msgpack::type::POSITIVE_INTEGER && o.via.u64 == v;
}

// Decodes a reply; it must be [1, id, "eval", {"ok": 1}].
void check_reply(const char* body, std::size_t size, std::uint64_t id) {
  msgpack::object_handle oh = msgpack::unpack(body, size);
  const msgpack::object& o = oh.get();
  const msgpack::object* a = o.type == msgpack::type::ARRAY && o.via.array.size == 4
                               ? o.via.array.ptr : nullptr;
  const bool ok = a && is_uint(a[0], 1) && is_uint(a[1], id) && is_str(a[2], "eval") &&
                  a[3].type == msgpack::type::MAP && a[3].via.map.size == 1 &&
                  is_str(a[3].via.map.ptr[0].key, "ok") && is_uint(a[3].via.map.ptr[0].val, 1);
  if (!ok)
    fail("bad reply to request " + std::to_string(id) + ": " + text(o));
}

// The child's first frame: [2, 0, "ready", {"codec": str, "python": str}].
std::map<std::string, std::string> read_hello(child& c) {
  const char* body;
  std::size_t size;
  while (!c.next(body, size))
    c.fill();
  msgpack::object_handle oh = msgpack::unpack(body, size);
  try {
    auto [kind, id, op, payload] = oh.get().as<std::tuple<int, std::uint64_t, std::string,
                                                          std::map<std::string, std::string>>>();
    if (kind == 2 && op == "ready")
      return payload;
  } catch (const msgpack::type_error&) {}
  fail("bad first frame from the child: " + text(oh.get()));
}

double host_cpu_s() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// The child's CPU time in seconds: schedstat's run time (ns), else stat's utime + stime (ticks).
double child_cpu_s(pid_t pid, std::string& source) {
  const std::string dir = "/proc/" + std::to_string(pid);
  unsigned long long ns = 0;
  if (std::ifstream(dir + "/schedstat") >> ns; ns > 0) {
    source = "schedstat";
    return static_cast<double>(ns) / 1e9;
  }
  std::string line, skip;
  std::getline(std::ifstream(dir + "/stat"), line);
  std::istringstream fields(line.substr(std::min(line.rfind(')'), line.size()) + 1));
  unsigned long long utime = 0, stime = 0;
  for (int f = 3; f < 14; ++f)  // fields 3 (state) .. 13; 14 and 15 are utime and stime
    fields >> skip;
  if (!(fields >> utime >> stime))
    fail("cannot parse " + dir + "/stat");
  source = "stat";
  return static_cast<double>(utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

struct result {
  double rt_s = 0, host_cpu_us = 0, py_cpu_us = 0;
  std::string py_cpu_source;
  std::vector<double> latencies_us;  // depth 1 only
};

// `warmup` then `count` replies with `depth` requests in flight; after each read, the window is
// topped up (batched: all new frames in one write; else one write per frame). At depth 1 this is
// the serial round trip, timed from before the encoding to after the reply's check.
result exchange(child& c, long long depth, bool batched, long long warmup, long long count,
                std::uint64_t& next_id) {
  msgpack::sbuffer sb;
  result r;
  const long long total = warmup + count;
  long long sent = 0, received = 0;
  std::uint64_t expect = next_id;
  auto t_sent = clock_type::now();
  auto send = [&](long long k) {
    t_sent = clock_type::now();
    sb.clear();
    for (long long j = 0; j < k; ++j) {
      append_request(sb, next_id++);
      if (!batched)
        write_all(c.wfd, sb.data(), sb.size()), sb.clear();
    }
    if (batched)
      write_all(c.wfd, sb.data(), sb.size());
    sent += k;
  };
  auto t0 = clock_type::now();
  double h0 = host_cpu_s(), p0 = child_cpu_s(c.pid, r.py_cpu_source);
  if (depth == 1)
    r.latencies_us.reserve(static_cast<std::size_t>(count));
  send(std::min(depth, total));
  while (received < total) {
    c.fill();
    long long got = 0;
    const char* body;
    std::size_t size;
    while (c.next(body, size)) {
      check_reply(body, size, expect++);
      ++got;
      if (depth == 1 && received >= warmup)
        r.latencies_us.push_back(us_since(t_sent, clock_type::now()));
      if (++received == warmup)
        t0 = clock_type::now(), h0 = host_cpu_s(), p0 = child_cpu_s(c.pid, r.py_cpu_source);
    }
    if (const long long more = std::min(got, total - sent); more > 0)
      send(more);
  }
  r.rt_s = static_cast<double>(count) / (us_since(t0, clock_type::now()) / 1e6);
  r.host_cpu_us = (host_cpu_s() - h0) * 1e6 / static_cast<double>(count);
  r.py_cpu_us = (child_cpu_s(c.pid, r.py_cpu_source) - p0) * 1e6 / static_cast<double>(count);
  return r;
}

int run(options& o) {
  if (o.script.empty())
    o.script = std::filesystem::read_symlink("/proc/self/exe").parent_path() / "py_min_loop.py";
  signal(SIGPIPE, SIG_IGN);  // a dead child shows up as EPIPE

  pyvisor_bench::json_object j;
  j.str("bench", "c_host_floor");
  std::string codec, version;
  std::uint64_t next_id = 1;
  for (const char* mode : {"batched", "per_request"}) {
    child c(o, mode);
    auto hello = read_hello(c);
    codec = hello["codec"], version = hello["python"];
    const bool batched = std::string_view(mode) == "batched";
    if (batched) {
      result r = exchange(c, 1, true, o.warmup, o.iters, next_id);
      const auto s = pyvisor_bench::summarize(r.latencies_us);
      j.num("p50_us", s.p50).num("p99_us", s.p99).num("mean_us", s.mean).num("min_us", s.min)
        .num("max_us", s.max).num("host_cpu_us", r.host_cpu_us).num("py_cpu_us", r.py_cpu_us)
        .str("py_cpu_source", r.py_cpu_source);
    }
    for (long long d : o.depths)
      j.num(std::string(mode) + "_rt_s_" + std::to_string(d),
            exchange(c, d, batched, o.count_warmup, o.count, next_id).rt_s, 1);
    c.finish();
  }
  j.str("python", o.python).str("python_version", version).str("codec", codec)
    .integer("iters", o.iters).integer("warmup", o.warmup)
    .integer("count", o.count).integer("count_warmup", o.count_warmup).print();
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  options o;
  pyvisor_bench::cli cli(prog, argc, argv);
  while (cli.next()) {
    if (cli.is("--iters")) o.iters = cli.count();
    else if (cli.is("--warmup")) o.warmup = cli.count();
    else if (cli.is("--count")) o.count = cli.count();
    else if (cli.is("--count-warmup")) o.count_warmup = cli.count();
    else if (cli.is("--depths")) o.depths = cli.counts();
    else if (cli.is("--quick")) o.quick = true;
    else if (cli.is("--python")) o.python = cli.value();
    else if (cli.is("--script")) o.script = cli.value();
    else if (cli.is("--runner-dir")) o.runner_dir = cli.value();
    else if (cli.is("-h") || cli.is("--help")) { usage(stdout); return 0; }
    else cli.unknown(usage);
  }
  if (o.iters < 0) o.iters = o.quick ? 5000 : 20000;
  if (o.warmup < 0) o.warmup = o.quick ? 500 : 2000;
  if (o.count < 0) o.count = o.quick ? 20000 : 100000;
  if (o.count_warmup < 0) o.count_warmup = o.quick ? 2000 : 10000;
  std::sort(o.depths.begin(), o.depths.end());
  o.depths.erase(std::unique(o.depths.begin(), o.depths.end()), o.depths.end());
  if (o.iters < 1 || o.count < 1 || o.depths.empty() || o.depths.front() < 1 ||
      o.depths.back() > max_depth) {
    std::fprintf(stderr, "%s: --iters and --count must be >= 1, each depth 1..%ld\n", prog,
                 max_depth);
    return 2;
  }
  return pyvisor_bench::guarded(prog, [&] { return run(o); });
}
