// Serial eval "return 1", two ways, on the same interpreter (see bench/README.md):
//  (a) facade: a plain C++ thread calls the blocking `py.eval("return 1")`;
//  (b) actor:  a CAF event_based actor sends (eval_atom, eval_request) to `py.actor()` and, on
//      each reply, the next one; each round trip is timed with steady_clock inside the actor.
// Alternating blocks of --block calls (facade, actor, actor, facade, ...: ABBA, so drift hits
// both), --iters timed each after --warmup untimed each. Every reply is checked to be 1. Prints
// one JSON object; errors go to stderr with exit code 1.
#include <chrono>
#include <cstdio>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include <caf/all.hpp>

#include "pyvisor/actor_interface.hpp"
#include "pyvisor/runtime.hpp"

#include "bench_common.hpp"

namespace {

using namespace pyvisor_bench;
constexpr const char* prog = "bench_eval_actor";
constexpr const char* code = "return 1";

struct options {
  common_options c;
  long long iters = -1;
  long long warmup = -1;
  long long block = 500;
};

void usage(std::FILE* f) {
  std::fprintf(f,
               "usage: bench_eval_actor [--iters N] [--warmup N] [--block N] <common>\n"
               "  defaults: --iters 20000 --warmup 2000 --block 500\n"
               "            (--quick: --iters 5000 --warmup 500)\n"
               "%s  Prints one JSON object.\n",
               common_usage);
}

// Empty when `v` is the integer 1, else why not.
std::string not_one(const pyvisor::value& v) {
  auto n = v.to<long>();
  if (!n)
    return std::string{"a "} + v.type_name() + ", not 1";
  if (*n != 1)
    return std::to_string(*n) + ", not 1";
  return {};
}

bool is_one(const pyvisor::expected<pyvisor::value>& r, const char* what) {
  const std::string why = r ? not_one(*r) : r.error().to_string();
  if (why.empty())
    return true;
  std::fprintf(stderr, "%s: %s: %s\n", prog, what, why.c_str());
  return false;
}

// One chain of `count` serial requests sent by an actor; shared with it, so a chain the main
// thread gave up on can still finish safely.
struct chain {
  caf::actor target;
  long long count = 0;
  long long sent = 0;
  std::vector<double> samples;  // copied out by the main thread once the chain is done
  clock_type::time_point t0;
  std::promise<std::string> done;      // empty string: success
};

void send_next(caf::event_based_actor* self, std::shared_ptr<chain> c) {
  pyvisor::eval_request req;
  req.code = code;
  ++c->sent;
  c->t0 = clock_type::now();
  self->request(c->target, caf::infinite, pyvisor::eval_atom::value, std::move(req))
    .then(
      [self, c](const pyvisor::value& v) {
        const auto t1 = clock_type::now();
        c->samples.push_back(us_since(c->t0, t1));
        if (auto why = not_one(v); !why.empty()) {
          c->done.set_value("actor eval #" + std::to_string(c->sent) + ": " + why);
          self->quit();
        } else if (c->sent < c->count) {
          send_next(self, c);
        } else {
          c->done.set_value({});
          self->quit();
        }
      },
      [self, c](const caf::error& e) {
        c->done.set_value("actor eval #" + std::to_string(c->sent) + " failed: " +
                          pyvisor::to_error(e).to_string());
        self->quit();
      });
}

// Runs `count` serial evals from an actor; false (with a message) on error.
bool actor_chain(pyvisor::runtime& rt, const caf::actor& target, long long count,
                 std::vector<double>* out) {
  if (count < 1)
    return true;
  auto c = std::make_shared<chain>();
  c->target = target;
  c->count = count;
  c->samples.reserve(static_cast<std::size_t>(count));
  auto result = c->done.get_future();
  rt.system().spawn([c](caf::event_based_actor* self) { send_next(self, c); });
  // Bounded: far beyond what `count` round trips take on any machine this runs on.
  const auto bound = std::chrono::seconds{60} + std::chrono::milliseconds{10} * count;
  if (result.wait_for(bound) != std::future_status::ready) {
    std::fprintf(stderr, "%s: the actor chain did not finish within %lld ms\n", prog,
                 static_cast<long long>(bound.count()));
    return false;
  }
  const std::string why = result.get();
  if (!why.empty()) {
    std::fprintf(stderr, "%s: %s\n", prog, why.c_str());
    return false;
  }
  if (out)
    out->insert(out->end(), c->samples.begin(), c->samples.end());
  return true;
}

bool facade_block(pyvisor::interpreter& py, long long count, std::vector<double>* out) {
  for (long long k = 0; k < count; ++k) {
    const auto t0 = clock_type::now();
    auto r = py.eval(code);
    const auto t1 = clock_type::now();
    if (out)
      out->push_back(us_since(t0, t1));
    if (!is_one(r, "facade eval"))
      return false;
  }
  return true;
}

int run(const options& o) {
  pyvisor::runtime rt{pyvisor::runtime_options{.log = {}}};
  const auto io = interpreter_opts(o.c);
  auto py = spawn(prog, rt, io);
  if (!py)
    return 1;
  const caf::actor target = py->actor();

  if (!facade_block(*py, o.warmup, nullptr) || !actor_chain(rt, target, o.warmup, nullptr))
    return 1;

  std::vector<double> facade_us, actor_us;
  facade_us.reserve(static_cast<std::size_t>(o.iters));
  actor_us.reserve(static_cast<std::size_t>(o.iters));
  auto timed = [&](bool facade, long long count) {
    return facade ? facade_block(*py, count, &facade_us)
                  : actor_chain(rt, target, count, &actor_us);
  };
  long long done = 0;
  for (long long b = 0; done < o.iters; ++b) {
    const long long count = std::min(o.block, o.iters - done);
    const bool facade_first = (b % 2) == 0;  // ABBA: F A | A F | F A | ...
    if (!timed(facade_first, count) || !timed(!facade_first, count))
      return 1;
    done += count;
  }
  const auto n = static_cast<std::size_t>(o.iters);
  if (facade_us.size() != n || actor_us.size() != n) {
    std::fprintf(stderr, "%s: %zu facade and %zu actor samples, expected %lld each\n", prog,
                 facade_us.size(), actor_us.size(), o.iters);
    return 1;
  }

  json_object j;
  describe(j, "eval_actor", o.c, io, *py);
  if (!stop(prog, *py))
    return 1;
  const auto f = summarize(facade_us);
  const auto a = summarize(actor_us);
  j.integer("iters", o.iters)
    .integer("warmup", o.warmup)
    .integer("block", o.block)
    .num("eval_actor_p50_us", a.p50)
    .num("eval_actor_p99_us", a.p99)
    .num("eval_actor_mean_us", a.mean)
    .num("eval_actor_min_us", a.min)
    .num("eval_facade_p50_us", f.p50)
    .num("eval_facade_p99_us", f.p99)
    .num("eval_facade_mean_us", f.mean)
    .num("eval_facade_min_us", f.min)
    .num("actor_to_facade_p50", a.p50 / f.p50)
    .print();
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  return bench_main(prog, argc, argv, o.c,
                    {{"--iters", &o.iters, 5000, 20000},
                     {"--warmup", &o.warmup, 500, 2000, 0},
                     {"--block", &o.block}},
                    usage, [&] { return run(o); });
}
