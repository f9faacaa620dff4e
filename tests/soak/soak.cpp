// The soak (issues 7 and 9): a supervised pool of interpreters under mixed load from several
// threads for a bounded time, with random SIGKILLs of its workers (the pool restarts them) and
// occasional oversize payloads. Every request is tracked by id and must be answered exactly
// once; the pool must end with all its workers ready and as many restarts as kills; host RSS
// and fd count are sampled and must stay flat after warm-up. Prints the series and a summary
// line; exit 0 on success, 1 with the reason otherwise.
//
//   soak --minutes 2 --python /usr/bin/python3 [--interpreters 4] [--threads 4] [--seed N]
//        [--spawn cold|fork_server]
#include <dirent.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "pyvisor/runtime.hpp"

using namespace std::chrono_literals;
using pyvisor::errc;
using pyvisor::expected;
using pyvisor::interpreter;
using pyvisor::value;

namespace {

using clock_type = std::chrono::steady_clock;

long rss_kib() {
  std::ifstream f("/proc/self/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0)
      return std::stol(line.substr(6));
  return -1;
}

int fd_count() {
  int n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (auto* e = ::readdir(d))
      if (e->d_name[0] != '.')
        ++n;
    ::closedir(d);
    --n;  // the directory's own fd
  }
  return n;
}

/// Every request by id: submitted once, answered exactly once, by outcome.
class ledger {
public:
  std::uint64_t submit(const char* kind) {
    std::lock_guard<std::mutex> g{mu_};
    auto id = ++next_;
    open_.emplace(id, kind);
    ++submitted_;
    return id;
  }

  /// `outcome`: "ok" or the errc name; `unexpected`: the answer is wrong for this request.
  void answer(std::uint64_t id, const std::string& outcome, const std::string& unexpected = {}) {
    std::lock_guard<std::mutex> g{mu_};
    auto i = open_.find(id);
    if (i == open_.end()) {
      ++duplicates_;
      return;
    }
    ++by_outcome_[outcome];
    if (!unexpected.empty()) {
      ++unexpected_;
      if (unexpected_examples_.size() < 5)
        unexpected_examples_.push_back(std::string{i->second} + ": " + unexpected);
    }
    open_.erase(i);
  }

  std::size_t open() const {
    std::lock_guard<std::mutex> g{mu_};
    return open_.size();
  }

  std::string report(std::uint64_t& submitted, std::uint64_t& answered, std::uint64_t& duplicates,
                     std::uint64_t& unexpected, std::vector<std::string>& examples) const {
    std::lock_guard<std::mutex> g{mu_};
    std::string s;
    answered = 0;
    for (auto& [k, n] : by_outcome_) {
      s += " " + k + "=" + std::to_string(n);
      answered += n;
    }
    submitted = submitted_;
    duplicates = duplicates_;
    unexpected = unexpected_;
    examples = unexpected_examples_;
    return s;
  }

private:
  mutable std::mutex mu_;
  std::uint64_t next_ = 0;
  std::uint64_t submitted_ = 0;
  std::uint64_t duplicates_ = 0;
  std::uint64_t unexpected_ = 0;
  std::vector<std::string> unexpected_examples_;
  std::unordered_map<std::uint64_t, const char*> open_;
  std::map<std::string, std::uint64_t> by_outcome_;
};

std::string outcome_of(const pyvisor::error& e) {
  return std::string{pyvisor::to_string(e.code)};
}

/// Errors any request may get because its interpreter was killed (or replaced) meanwhile.
bool kill_related(errc c) {
  return c == errc::interpreter_exited || c == errc::interpreter_down || c == errc::env_lost;
}

struct config {
  double minutes = 0.5;
  std::string python = "python3";
  int interpreters = 4;
  int threads = 4;
  unsigned seed = 0;
  pyvisor::spawn_mode spawn = pyvisor::spawn_mode::cold;
};

class soak {
public:
  explicit soak(config c) : cfg_(std::move(c)) {}

  int run() {
    pyvisor::runtime_options ro;
    ro.log = [this](const pyvisor::log_record&) { log_lines_++; };
    pyvisor::runtime rt{ro};
    rt_ = &rt;
    rt.expose("add", [](long a, long b) { return a + b; });
    std::printf("soak: %.2f min, python %s, %d interpreters, %d threads, seed %u, spawn %s\n",
                cfg_.minutes, cfg_.python.c_str(), cfg_.interpreters, cfg_.threads, cfg_.seed,
                cfg_.spawn == pyvisor::spawn_mode::fork_server ? "fork_server" : "cold");

    // Baseline of the fds: the runtime is up, no interpreter yet (one started and stopped, so
    // process-wide state the first start creates is there).
    {
      auto warm = rt.spawn_interpreter(options(-1));
      if (!warm)
        return fail("warm-up spawn failed: " + warm.error().to_string());
      (void) warm->stop();
    }
    std::this_thread::sleep_for(100ms);
    int fds0 = fd_count();

    pyvisor::pool_options po;
    po.name = "soak";
    po.workers = static_cast<std::size_t>(cfg_.interpreters);
    po.worker = options(0);
    po.worker.label.clear();  // the pool names its workers
    {
      auto p = rt.spawn_pool(po);
      if (!p)
        return fail("spawn_pool failed: " + p.error().to_string());
      pool_ = std::make_shared<pyvisor::pool>(*p);
    }

    auto total = std::chrono::milliseconds{static_cast<std::int64_t>(cfg_.minutes * 60000.0)};
    start_ = clock_type::now();
    deadline_ = start_ + total;
    auto warm_end = start_ + total / 5;
    auto interval = std::clamp<std::chrono::milliseconds>(total / 10, 1000ms, 5000ms);

    // A hang anywhere (a stop that never completes, a call without an answer) fails the run
    // instead of blocking CI.
    std::thread([this, bound = total + 120s] {
      std::this_thread::sleep_for(bound);
      std::printf("soak: FAILED: still running %lld s after the start (a hang); open requests: %zu\n",
                  static_cast<long long>(std::chrono::duration_cast<std::chrono::seconds>(bound).count()),
                  book_.open());
      std::fflush(stdout);
      std::_Exit(1);
    }).detach();
    std::vector<std::thread> workers;
    for (int t = 0; t < cfg_.threads; ++t)
      workers.emplace_back([this, t] { work(cfg_.seed * 7919u + static_cast<unsigned>(t)); });
    std::thread killer([this] { kill_loop(cfg_.seed * 104729u + 17u); });

    struct sample {
      double t;
      long rss;
      int fds;
    };
    std::vector<sample> series;
    long rss_at_warm = -1;
    long rss_max_after_warm = 0;
    auto next = start_;
    while (clock_type::now() < deadline_) {
      next += interval;
      std::this_thread::sleep_until(std::min(next, deadline_));
      auto now = clock_type::now();
      sample s{std::chrono::duration<double>(now - start_).count(), rss_kib(), fd_count()};
      series.push_back(s);
      std::printf("soak: t=%6.1fs rss=%7.1f MiB fds=%d requests=%llu kills=%d\n", s.t, s.rss / 1024.0,
                  s.fds, static_cast<unsigned long long>(submitted_.load()), kills_.load());
      std::fflush(stdout);
      if (now >= warm_end) {
        if (rss_at_warm < 0)
          rss_at_warm = s.rss;
        rss_max_after_warm = std::max(rss_max_after_warm, s.rss);
      }
    }
    stopping_ = true;
    for (auto& w : workers)
      w.join();
    killer.join();

    // The pool gets back to its size, with one restart per kill; then it stops, and every
    // request still open must be answered by then.
    bool whole = pool_->wait_ready(static_cast<std::size_t>(cfg_.interpreters), 60s);
    auto pst = pool_->stats();
    (void) pool_->stop();
    pool_.reset();
    auto settle = clock_type::now() + 30s;
    while ((book_.open() > 0 || async_outstanding_ > 0) && clock_type::now() < settle)
      std::this_thread::sleep_for(10ms);
    // fds of stopped interpreters are closed on the I/O thread: give it a moment.
    auto fd_settle = clock_type::now() + 10s;
    int fds_end = fd_count();
    while (fds_end != fds0 && clock_type::now() < fd_settle) {
      std::this_thread::sleep_for(20ms);
      fds_end = fd_count();
    }
    long rss_end = rss_kib();

    std::uint64_t submitted = 0, answered = 0, duplicates = 0, unexpected = 0;
    std::vector<std::string> examples;
    auto outcomes = book_.report(submitted, answered, duplicates, unexpected, examples);
    std::string series_text;
    for (auto& s : series)
    {
      char line[96];
      std::snprintf(line, sizeof line, "  t=%.1fs rss=%.1fMiB fds=%d\n", s.t, s.rss / 1024.0, s.fds);
      series_text += line;
    }
    std::printf("soak: series (rss MiB, fds):\n%s", series_text.c_str());
    std::printf("soak: outcomes:%s\n", outcomes.c_str());
    for (auto& e : examples)
      std::printf("soak: unexpected answer: %s\n", e.c_str());

    std::vector<std::string> reasons;
    if (submitted != answered)
      reasons.push_back(std::to_string(submitted - answered) + " requests never answered");
    if (duplicates > 0)
      reasons.push_back(std::to_string(duplicates) + " requests answered more than once");
    if (unexpected > 0)
      reasons.push_back(std::to_string(unexpected) + " unexpected answers");
    if (!whole)
      reasons.push_back("the pool did not get back to " + std::to_string(cfg_.interpreters) +
                        " ready workers");
    if (pst.restarts != static_cast<std::uint64_t>(kills_.load()))
      reasons.push_back("restarts " + std::to_string(pst.restarts) + " != kills " +
                        std::to_string(kills_.load()));
    double growth = rss_at_warm < 0 ? 0.0 : (rss_max_after_warm - rss_at_warm) / 1024.0;
    if (growth >= 48.0)
      reasons.push_back("RSS grew by " + std::to_string(growth) + " MiB after warm-up");
    if (fds_end != fds0)
      reasons.push_back("fds: " + std::to_string(fds_end) + " at the end, " + std::to_string(fds0) + " at the start");
    if (submitted < 100)
      reasons.push_back("only " + std::to_string(submitted) + " requests ran");

    std::printf("soak: %s minutes=%.2f requests=%llu answered=%llu kills=%d restarts=%llu "
                "rss_warm=%.1fMiB rss_max_after_warm=%.1fMiB rss_end=%.1fMiB growth=%.1fMiB fds_start=%d "
                "fds_end=%d log_lines=%llu\n",
                reasons.empty() ? "OK" : "FAILED", cfg_.minutes, static_cast<unsigned long long>(submitted),
                static_cast<unsigned long long>(answered), kills_.load(),
                static_cast<unsigned long long>(pst.restarts),
                rss_at_warm / 1024.0, rss_max_after_warm / 1024.0, rss_end / 1024.0, growth, fds0, fds_end,
                static_cast<unsigned long long>(log_lines_.load()));
    if (!reasons.empty()) {
      std::string all;
      for (auto& r : reasons)
        all += (all.empty() ? "" : "; ") + r;
      return fail(all);
    }
    return 0;
  }

private:
  static int fail(const std::string& why) {
    std::printf("soak: FAILED: %s\n", why.c_str());
    std::fflush(stdout);
    return 1;
  }

  pyvisor::interpreter_options options(int index) {
    pyvisor::interpreter_options o;
    o.python = cfg_.python;
    o.label = "soak-" + std::to_string(index) + "-" + std::to_string(generation_++);
    o.max_frame_bytes = std::size_t{1} << 20;  // oversize payloads stay cheap
    o.default_timeout = 20s;
    o.init_script = {"import asyncio\nbase = 1000", {}};
    o.spawn = cfg_.spawn;
    return o;
  }

  std::shared_ptr<pyvisor::pool> pick(std::mt19937&) { return pool_; }

  /// Records a blocking call's answer: `check` says what is wrong with a successful value.
  template <class Check>
  void settle(std::uint64_t id, const expected<value>& r, Check check, std::initializer_list<errc> allowed = {}) {
    submitted_++;
    if (r) {
      std::string wrong;
      try {
        wrong = check(*r);
      } catch (const std::exception& e) {
        wrong = std::string{"conversion: "} + e.what();
      }
      book_.answer(id, "ok", wrong);
      return;
    }
    auto c = r.error().code;
    bool fine = kill_related(c) || std::find(allowed.begin(), allowed.end(), c) != allowed.end();
    book_.answer(id, outcome_of(r.error()), fine ? std::string{} : r.error().to_string());
  }

  void work(unsigned seed) {
    std::mt19937 rng{seed};
    std::uniform_int_distribution<int> pct{0, 99};
    std::uniform_int_distribution<int> num{0, 1000000};
    while (!stopping_) {
      auto py = pick(rng);
      if (!py)
        continue;
      int p = pct(rng);
      if (p < 40) {  // fast eval
        int x = num(rng);
        auto id = book_.submit("fast eval");
        auto r = py->eval("return base + x", {{"x", x}});
        settle(id, r, [&](const value& v) { return v.as<int>() == 1000 + x ? "" : "wrong fast result"; });
      } else if (p < 60) {  // slow async eval, not awaited here
        if (async_outstanding_ > 64) {
          std::this_thread::sleep_for(5ms);
          continue;
        }
        int x = num(rng);
        auto id = book_.submit("slow async eval");
        submitted_++;
        async_outstanding_++;
        py->eval_async("await asyncio.sleep(0.05)\nreturn x", {{"x", x}}, {}, [this, id, x](expected<value> r) {
          if (r) {
            std::string wrong;
            try {
              wrong = r->as<int>() == x ? "" : "wrong slow result";
            } catch (const std::exception& e) {
              wrong = e.what();
            }
            book_.answer(id, "ok", wrong);
          } else {
            book_.answer(id, outcome_of(r.error()), kill_related(r.error().code) ? "" : r.error().to_string());
          }
          async_outstanding_--;
        });
      } else if (p < 75) {  // an env made, used, dropped
        int x = num(rng);
        auto id = book_.submit("make_env");
        auto e = py->make_env({.vars = {{"y", x}}});
        submitted_++;
        if (!e) {
          book_.answer(id, outcome_of(e.error()), kill_related(e.error().code) ? "" : e.error().to_string());
          continue;
        }
        book_.answer(id, "ok");
        auto id2 = book_.submit("env eval");
        auto r = e->eval("y = y + base\nreturn y");
        settle(id2, r, [&](const value& v) { return v.as<int>() == x + 1000 ? "" : "wrong env result"; });
        // the env handle goes here: the runner drops the namespace
      } else if (p < 95) {  // Python -> host
        int a = num(rng), b = num(rng);
        auto id = book_.submit("host call");
        auto r = py->eval("return await pyvisor.call('add', a, b)", {{"a", a}, {"b", b}});
        settle(id, r, [&](const value& v) { return v.as<long>() == long{a} + b ? "" : "wrong host-call result"; });
      } else if (p < 97) {  // oversize request
        auto id = book_.submit("oversize request");
        auto r = py->eval("return len(s)", {{"s", std::string((std::size_t{1} << 20) + 1024, 'z')}});
        settle(id, r, [](const value&) { return "an oversize request succeeded"; }, {errc::frame_too_large});
      } else if (p < 99) {  // oversize reply
        auto id = book_.submit("oversize reply");
        auto r = py->eval("return 'x' * (2 << 20)");
        settle(id, r, [](const value&) { return "an oversize reply succeeded"; },
               {errc::frame_too_large, errc::unserializable});
      } else {
        std::this_thread::sleep_for(2ms);
      }
    }
  }

  void kill_loop(unsigned seed) {
    std::mt19937 rng{seed};
    std::uniform_int_distribution<int> gap{1500, 4000};
    while (!stopping_) {
      auto until = clock_type::now() + std::chrono::milliseconds{gap(rng)};
      while (!stopping_ && clock_type::now() < until)
        std::this_thread::sleep_for(20ms);
      if (stopping_ || clock_type::now() + 1s > deadline_)
        return;
      // A random ready worker (one whose process is up; the pool restarts it).
      std::vector<int> pids;
      for (auto& w : pool_->stats().per_worker)
        if (w.state == pyvisor::worker_stats::ready && w.pid > 0)
          pids.push_back(w.pid);
      if (pids.empty())
        continue;
      int pid = pids[std::uniform_int_distribution<std::size_t>{0, pids.size() - 1}(rng)];
      if (::kill(pid, SIGKILL) == 0)
        kills_++;
    }
  }

  config cfg_;
  pyvisor::runtime* rt_ = nullptr;
  std::shared_ptr<pyvisor::pool> pool_;
  ledger book_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> generation_{0};
  std::atomic<int> kills_{0};
  std::atomic<int> async_outstanding_{0};
  std::atomic<std::uint64_t> submitted_{0};
  std::atomic<std::uint64_t> log_lines_{0};
  clock_type::time_point start_;
  clock_type::time_point deadline_;
};

int usage() {
  std::fprintf(stderr, "usage: soak --minutes N --python P [--interpreters K] [--threads T] [--seed S] "
                       "[--spawn cold|fork_server]\n");
  return 2;
}

} // namespace

int main(int argc, char** argv) {
  config c;
  c.seed = static_cast<unsigned>(std::random_device{}());
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (i + 1 >= argc)
      return usage();
    std::string v = argv[++i];
    try {
      if (a == "--minutes")
        c.minutes = std::stod(v);
      else if (a == "--python")
        c.python = v;
      else if (a == "--interpreters")
        c.interpreters = std::stoi(v);
      else if (a == "--threads")
        c.threads = std::stoi(v);
      else if (a == "--seed")
        c.seed = static_cast<unsigned>(std::stoul(v));
      else if (a == "--spawn" && (v == "cold" || v == "fork_server"))
        c.spawn = v == "cold" ? pyvisor::spawn_mode::cold : pyvisor::spawn_mode::fork_server;
      else
        return usage();
    } catch (const std::exception&) {
      return usage();
    }
  }
  if (c.minutes <= 0 || c.interpreters < 1 || c.threads < 1)
    return usage();
  ::signal(SIGPIPE, SIG_IGN);
  return soak{c}.run();
}
