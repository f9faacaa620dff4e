// A nested structure of many small items coming back from Python (see bench/README.md).
//
// The init script builds, once, in root:
//   data = [{"id": i, "name": f"item-{i}", "score": i * 0.25} for i in range(items)]
// (the same list as py_floor.py --variant msgpack_nested). Timed, `--warmup` untimed then
// `--iters` times, std::chrono::steady_clock:
//   auto r = py.eval("return data");                                              // eval
//   auto v = r->as<std::vector<std::map<std::string, msgpack::object>>>();        // convert
// The check (size, and one item's id/name/score) and the destruction of `v` are outside the
// timed window. Reports p50/p99 of eval + convert, its p50 per item (`us_per_item`), and the
// two parts' p50s. Prints one JSON object.

#include <cstdio>
#include <exception>
#include <map>
#include <string>
#include <vector>

#include "bench_common.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_nested";

using items_t = std::vector<std::map<std::string, msgpack::object>>;

struct options {
  common_options c;
  long long items = 10000;
  long long iters = -1;
  long long warmup = -1;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_nested [--items N] [--iters N] [--warmup N] <common>\n"
               "  defaults: --items 10000 --iters 200 --warmup 10\n"
               "  --quick:  --iters 50 --warmup 5\n"
               "%s  Prints one JSON object.\n",
               common_usage);
}

bool check(const items_t& v, long long items, long long i) {
  auto fail = [&](const char* why) {
    std::fprintf(stderr, "%s: round trip #%lld: %s\n", prog, i, why);
    return false;
  };
  if (static_cast<long long>(v.size()) != items)
    return fail("wrong number of items");
  const long long probe = items / 2;
  const auto& m = v[static_cast<std::size_t>(probe)];
  auto id = m.find("id");
  auto name = m.find("name");
  auto score = m.find("score");
  if (m.size() != 3 || id == m.end() || name == m.end() || score == m.end())
    return fail("an item does not have exactly the keys id, name, score");
  if (id->second.as<long long>() != probe ||
      name->second.as<std::string>() != "item-" + std::to_string(probe) ||
      score->second.as<double>() != static_cast<double>(probe) * 0.25)
    return fail("an item has the wrong values");
  return true;
}

int run(const options& o) {
  pyvisor::runtime rt;
  auto io = interpreter_opts(o.c);
  io.init_script.code =
    "data = [{'id': i, 'name': f'item-{i}', 'score': i * 0.25} for i in range(items)]";
  io.init_script.vars = {{"items", o.items}};
  auto spawned = spawn(prog, rt, io);
  if (!spawned)
    return 1;
  pyvisor::interpreter& py = *spawned;

  std::vector<double> total(static_cast<std::size_t>(o.iters));
  std::vector<double> eval(static_cast<std::size_t>(o.iters));
  std::vector<double> convert(static_cast<std::size_t>(o.iters));
  const auto bytes_in0 = py.stats().bytes_in;
  for (long long k = -o.warmup; k < o.iters; ++k) {
    const auto t0 = clock_type::now();
    auto r = py.eval("return data");
    const auto t1 = clock_type::now();
    if (!r) {
      std::fprintf(stderr, "%s: eval #%lld failed: %s\n", prog, k + o.warmup,
                   r.error().to_string().c_str());
      return 1;
    }
    auto v = r->as<items_t>();
    const auto t2 = clock_type::now();
    if (!check(v, o.items, k + o.warmup))
      return 1;
    if (k >= 0) {
      const auto i = static_cast<std::size_t>(k);
      total[i] = us_since(t0, t2);
      eval[i] = us_since(t0, t1);
      convert[i] = us_since(t1, t2);
    }
  }
  const auto reply_bytes =
    (py.stats().bytes_in - bytes_in0) / static_cast<std::uint64_t>(o.iters + o.warmup);

  json_object j;
  describe(j, "nested", o.c, io, py);
  if (!stop(prog, py))
    return 1;
  const auto t = summarize(total);
  const auto e = summarize(eval);
  const auto c = summarize(convert);
  j.integer("items", o.items)
    .integer("iters", o.iters)
    .integer("warmup", o.warmup)
    .integer("reply_bytes", static_cast<long long>(reply_bytes))
    .num("p50_us", t.p50)
    .num("p99_us", t.p99)
    .num("min_us", t.min)
    .num("us_per_item", t.p50 / static_cast<double>(o.items), 4)
    .num("eval_p50_us", e.p50)
    .num("convert_p50_us", c.p50)
    .print();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  return bench_main(prog, argc, argv, o.c,
                    {{"--items", &o.items},
                     {"--iters", &o.iters, 50, 200},
                     {"--warmup", &o.warmup, 5, 10, 0}},
                    usage, [&] { return run(o); });
}
