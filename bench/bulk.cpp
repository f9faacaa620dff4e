// Bulk bytes round trip (see bench/README.md).
//
// For each size N in --sizes (default 1 MiB and 64 MiB; --quick: 1 MiB only):
//   auto r = py.eval("return b", {{"b", payload}});   // payload: std::vector<char>(N)
// `--warmup` untimed then `--iters` timed round trips, std::chrono::steady_clock around the
// whole call (packing the argument, the request frame, the pipe both ways, Python decoding
// and re-encoding the bytes, decoding the reply; the packing alone is also reported as
// pack_p50_ms_<size>). The reply is checked outside the timed
// window to be a msgpack bin with the same N bytes. Throughput counts both directions'
// payload: MB/s = 2 * N / p50 round-trip time / 10^6. max_frame_bytes is raised to
// --max-frame (default 256 MiB) so 64 MiB payloads fit. Prints one JSON object; keys per size
// carry a label suffix (`mb_s_1mib`, `p50_ms_64mib`, ...). Sizes above 8 MiB are also measured
// with eval_options::bytes_as_memoryview (`view_*`), on a second interpreter without shared
// memory (`pipe_*`: shared_memory_threshold = 0), and, when the interpreter has numpy, as a
// float64 numpy array of the same size (`ndarray_*`: `return a`, the host sending an
// ndarray_view<double>::take of a copy made before the clock starts, and reading the reply
// with ndarray_view<double>::from), and with the payload moved into the argument (`moved_*`:
// a copy made before the clock starts, `{"b", std::move(copy)}`).

#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "bench_common.hpp"
#include "pyvisor/ndarray.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_bulk";

struct options {
  common_options c;
  std::vector<long long> sizes;
  long long iters = -1;   // -1: per size (see usage)
  long long warmup = -1;
  long long max_frame = 256LL << 20;
  long long keep = -1;  // shared_memory_keep; -1: the default
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_bulk [--sizes N,N,...] [--iters N] [--warmup N] [--max-frame N]\n"
               "                  [--shm-keep N]\n"
               "                  <common>\n"
               "  defaults: --sizes 1M,64M (--quick: 1M) --max-frame 256M\n"
               "            --iters 200 for sizes <= 8 MiB, else 8 (--quick: 50 / 3)\n"
               "            --warmup 10 for sizes <= 8 MiB, else 1\n"
               "  sizes accept a K/M/G suffix (binary).\n"
               "%s  Prints one JSON object.\n",
               common_usage);
}

std::string label_of(long long n) {
  if (n % (1LL << 20) == 0)
    return std::to_string(n >> 20) + "mib";
  if (n % (1LL << 10) == 0)
    return std::to_string(n >> 10) + "kib";
  return std::to_string(n) + "b";
}

// Whether the reply holds exactly `payload`; prints why not.
bool check(const pyvisor::expected<pyvisor::value>& r, const std::vector<char>& payload,
           long long i) {
  if (!r) {
    std::fprintf(stderr, "%s: round trip #%lld of %zu bytes failed: %s\n", prog, i,
                 payload.size(), r.error().to_string().c_str());
    return false;
  }
  const auto& obj = r->object();
  if (obj.type != msgpack::type::BIN) {
    std::fprintf(stderr, "%s: round trip #%lld returned a %s, not bytes\n", prog, i,
                 r->type_name());
    return false;
  }
  if (obj.via.bin.size != payload.size() ||
      std::memcmp(obj.via.bin.ptr, payload.data(), payload.size()) != 0) {
    std::fprintf(stderr, "%s: round trip #%lld returned %u bytes that differ from the %zu sent\n",
                 prog, i, obj.via.bin.size, payload.size());
    return false;
  }
  return true;
}

// Whether the reply is the float64 array `xs` (one dimension).
bool check_array(const pyvisor::expected<pyvisor::value>& r, const std::vector<double>& xs,
                 long long i) {
  if (!r) {
    std::fprintf(stderr, "%s: ndarray round trip #%lld failed: %s\n", prog, i,
                 r.error().to_string().c_str());
    return false;
  }
  auto a = pyvisor::ndarray_view<double>::from(*r);
  if (!a || a->shape() != std::vector<std::size_t>{xs.size()} ||
      std::memcmp(a->data(), xs.data(), xs.size() * sizeof(double)) != 0) {
    std::fprintf(stderr, "%s: ndarray round trip #%lld returned another array%s%s\n", prog, i,
                 a ? "" : ": ", a ? "" : a.error().to_string().c_str());
    return false;
  }
  return true;
}

/// Round trips of a float64 array of `xs` through `py`, a copy of `xs` moved into the
/// argument each time (made before the clock starts: `ndarray_view::take`, no copy when
/// sending); false after a failed one.
bool measure_array(pyvisor::interpreter& py, const std::vector<double>& xs, long long iters,
                   long long warmup, std::vector<double>& samples) {
  samples.assign(static_cast<std::size_t>(iters), 0);
  for (long long k = -warmup; k < iters; ++k) {
    std::vector<double> fresh = xs;
    const auto t0 = clock_type::now();
    auto a = pyvisor::ndarray_view<double>::take(std::move(fresh), {xs.size()});
    if (!a) {
      std::fprintf(stderr, "%s: %s\n", prog, a.error().to_string().c_str());
      return false;
    }
    auto r = py.eval("return a", {{"a", *a}});
    const auto t1 = clock_type::now();
    if (!check_array(r, xs, k + warmup))
      return false;
    if (k >= 0)
      samples[static_cast<std::size_t>(k)] = us_since(t0, t1);
  }
  return true;
}

/// Round trips of `payload` through `py` (timed from packing the argument to the reply);
/// false after a failed one.
/// With `moved`, a copy of `payload` made before the clock starts is moved into the argument
/// (`{"b", std::move(copy)}`: the argument holds it without copying).
bool measure(pyvisor::interpreter& py, const std::vector<char>& payload, long long iters,
             long long warmup, const pyvisor::eval_options& eo, std::vector<double>& samples,
             std::vector<double>& packing, bool moved = false) {
  samples.assign(static_cast<std::size_t>(iters), 0);
  packing.assign(static_cast<std::size_t>(iters), 0);
  for (long long k = -warmup; k < iters; ++k) {
    std::vector<char> fresh;
    if (moved)
      fresh = payload;
    // Same as py.eval("return b", {{"b", payload}}), with the packing of the argument
    // (which that expression does first) timed on its own as well.
    const auto t0 = clock_type::now();
    pyvisor::vars v{moved ? pyvisor::var{"b", std::move(fresh)} : pyvisor::var{"b", payload}};
    const auto t1 = clock_type::now();
    auto r = py.eval("return b", v, eo);
    const auto t2 = clock_type::now();
    if (!check(r, payload, k + warmup))
      return false;
    if (k >= 0) {
      samples[static_cast<std::size_t>(k)] = us_since(t0, t2);
      packing[static_cast<std::size_t>(k)] = us_since(t0, t1);
    }
  }
  return true;
}

int run(const options& o) {
  pyvisor::runtime rt;
  auto io = interpreter_opts(o.c);
  io.max_frame_bytes = static_cast<std::size_t>(o.max_frame);
  if (o.keep >= 0)
    io.shared_memory_keep = static_cast<std::size_t>(o.keep);
  auto spawned = spawn(prog, rt, io);
  if (!spawned)
    return 1;
  pyvisor::interpreter& py = *spawned;
  // The same interpreter without shared memory: the pipe path, in the same run.
  auto pipe_io = io;
  pipe_io.shared_memory_threshold = 0;
  auto pipe_spawned = spawn(prog, rt, pipe_io);
  if (!pipe_spawned)
    return 1;

  auto numpy_check = py.eval("import importlib.util\nreturn importlib.util.find_spec('numpy') is not None");
  const bool has_numpy = numpy_check && numpy_check->as<bool>();
  if (!has_numpy)
    std::fprintf(stderr, "%s: no numpy in the interpreter: no ndarray_* figures\n", prog);

  json_object j;
  describe(j, "bulk", o.c, io, py);
  j.integer("max_frame_bytes", o.max_frame);
  j.integer("shared_memory_threshold", static_cast<long long>(io.shared_memory_threshold));
  j.integer("shared_memory_keep", static_cast<long long>(io.shared_memory_keep));
  std::string labels = "[";
  std::vector<double> samples, packing;
  for (long long n : o.sizes) {
    const bool big = n > (8LL << 20);
    const long long iters = o.iters >= 0 ? o.iters : big ? (o.c.quick ? 3 : 8)
                                                         : (o.c.quick ? 50 : 200);
    const long long warmup = o.warmup >= 0 ? o.warmup : big ? 1 : 10;
    std::vector<char> payload(static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < payload.size(); ++i)
      payload[i] = static_cast<char>((i * 31u + 7u) & 0xFFu);
    const auto label = label_of(n);
    if (labels.size() > 1)
      labels += ',';
    labels += json_str(label);
    auto mb_s = [&](double p50_us) { return 2.0 * static_cast<double>(n) / (p50_us / 1e6) / 1e6; };

    if (!measure(py, payload, iters, warmup, {}, samples, packing))
      return 1;
    const auto s = summarize(samples);
    const auto pk = summarize(packing);
    j.integer("bytes_" + label, n)
      .integer("iters_" + label, iters)
      .num("p50_ms_" + label, s.p50 / 1e3)
      .num("p99_ms_" + label, s.p99 / 1e3)
      .num("min_ms_" + label, s.min / 1e3)
      .num("pack_p50_ms_" + label, pk.p50 / 1e3)
      .num("mb_s_" + label, mb_s(s.p50), 1);
    if (!big)
      continue;
    // Python sees a memoryview of the shared memory (eval_options::bytes_as_memoryview).
    pyvisor::eval_options view;
    view.bytes_as_memoryview = true;
    if (!measure(py, payload, iters, warmup, view, samples, packing))
      return 1;
    const auto v = summarize(samples);
    j.num("view_p50_ms_" + label, v.p50 / 1e3).num("view_mb_s_" + label, mb_s(v.p50), 1);
    // The caller's vector moved into the argument: no packing copy.
    if (!measure(py, payload, iters, warmup, {}, samples, packing, true))
      return 1;
    const auto mv = summarize(samples);
    j.num("moved_p50_ms_" + label, mv.p50 / 1e3).num("moved_mb_s_" + label, mb_s(mv.p50), 1);
    // The pipe alone.
    if (!measure(*pipe_spawned, payload, iters, warmup, {}, samples, packing))
      return 1;
    const auto p = summarize(samples);
    j.num("pipe_p50_ms_" + label, p.p50 / 1e3).num("pipe_mb_s_" + label, mb_s(p.p50), 1);
    // A float64 numpy array of the same size (ext 7 through shared memory), when the
    // interpreter has numpy.
    if (has_numpy) {
      std::vector<double> xs(static_cast<std::size_t>(n) / sizeof(double));
      for (std::size_t i = 0; i < xs.size(); ++i)
        xs[i] = static_cast<double>(i) * 0.5;
      if (!measure_array(py, xs, iters, warmup, samples))
        return 1;
      const auto a = summarize(samples);
      j.num("ndarray_p50_ms_" + label, a.p50 / 1e3).num("ndarray_mb_s_" + label, mb_s(a.p50), 1);
    }
  }
  j.raw("sizes", labels + "]");
  if (!stop(prog, py) || !stop(prog, *pipe_spawned))
    return 1;
  j.print();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  bool sizes_given = false;
  return bench_main(
    prog, argc, argv, o.c,
    {{"--iters", &o.iters, -1, -1, -1}, {"--warmup", &o.warmup, -1, -1, -1},
     {"--max-frame", &o.max_frame}, {"--shm-keep", &o.keep, -1, -1, -1}},
    usage,
    [&] {
      if (!sizes_given)
        o.sizes = o.c.quick ? std::vector<long long>{1LL << 20}
                            : std::vector<long long>{1LL << 20, 64LL << 20};
      if (o.sizes.empty() || o.iters == 0 ||
          std::any_of(o.sizes.begin(), o.sizes.end(), [](long long n) { return n < 1; })) {
        std::fprintf(stderr, "%s: --sizes must be >= 1 byte each and --iters >= 1\n", prog);
        return 2;
      }
      return run(o);
    },
    [&](cli& a) {
      if (!a.is("--sizes"))
        return false;
      o.sizes = a.counts();
      sizes_given = true;
      return true;
    });
}
