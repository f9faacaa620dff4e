// spawn_mode::fork_server: interpreters forked from a warm template get what a cold one gets
// (fds, signals, process group, PDEATHSIG, limits, exit reasons, interrupts), and the template's
// own failures cost only a restart (issue 12).
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <future>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "pyvisor/pool.hpp"
#include "support/fixture.hpp"
#include "support/helper_host.hpp"
#include "support/temp_files.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

class fork_server_test : public runtime_test {
protected:
  interpreter_options forked() {
    auto o = options();
    o.spawn = spawn_mode::fork_server;
    return o;
  }

  // Processes whose parent is a fork server's template of this test process (any runtime).
  static std::vector<int> forked_workers() {
    auto cmdline = [](const std::string& pid) { return read_file("/proc/" + pid + "/cmdline"); };
    auto parent = [](const std::string& pid) {
      auto st = read_file("/proc/" + pid + "/stat");
      auto close = st.rfind(')');
      int ppid = -1;
      if (close != std::string::npos)
        std::sscanf(st.c_str() + close + 1, " %*c %d", &ppid);
      return ppid;
    };
    std::vector<int> out;
    for (auto& e : std::filesystem::directory_iterator("/proc")) {
      auto name = e.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos)
        continue;
      int pp = parent(name);
      if (pp <= 0)
        continue;
      auto tmpl = std::to_string(pp);
      // The template's parent is its guard, whose parent is this process.
      if (cmdline(tmpl).find("pyvisor._fork_server") != std::string::npos &&
          parent(std::to_string(parent(tmpl))) == ::getpid())
        out.push_back(std::stoi(name));
    }
    return out;
  }

  // A copy of the runner that tests can add modules beside (runner_dir is on sys.path).
  bool copy_runner(const temp_dir& to) {
    auto cold = must_spawn(options());
    auto dir = cold.eval("import os, pyvisor\nreturn os.path.dirname(os.path.dirname(pyvisor.__file__))");
    if (!dir) {
      ADD_FAILURE() << dir.error();
      return false;
    }
    std::filesystem::copy(dir->as<std::string>() + "/pyvisor", to / "pyvisor",
                          std::filesystem::copy_options::recursive);
    return true;
  }

  static int eval_int(interpreter& py, const std::string& code) {
    auto r = py.eval(code);
    if (!r) {
      ADD_FAILURE() << r.error().to_string();
      return -1;
    }
    return r->as<int>();
  }

  // What a process sees of its own set-up: open fds, blocked and ignored signals, the handlers
  // of SIGCHLD and SIGINT, its group, PDEATHSIG, fd 0, inheritability of 3 and 4.
  static std::string probe(interpreter& py) {
    auto r = py.eval(R"PY(
import ctypes, os, signal
libc = ctypes.CDLL(None, use_errno=True)
sig = ctypes.c_int(0)
libc.prctl(2, ctypes.byref(sig), 0, 0, 0)  # PR_GET_PDEATHSIG
with open('/proc/self/status') as f:
    st = dict(l.split(':', 1) for l in f if ':' in l)
fds = sorted(int(f) for f in os.listdir('/proc/self/fd'))
return repr([fds, st['SigBlk'].strip(), st['SigIgn'].strip(),
             signal.getsignal(signal.SIGCHLD) == signal.SIG_DFL,
             callable(signal.getsignal(signal.SIGINT)),
             os.getpgrp() == os.getpid(), sig.value, os.readlink('/proc/self/fd/0'),
             os.get_inheritable(3), os.get_inheritable(4)])
)PY");
    if (!r) {
      ADD_FAILURE() << r.error().to_string();
      return "";
    }
    return r->as<std::string>();
  }
};

} // namespace

TEST_F(fork_server_test, workers_answer_and_share_one_template) {
  auto a = must_spawn(forked());
  auto b = must_spawn(forked());
  EXPECT_EQ(a.eval("return 6 * 7")->as<int>(), 42);
  int parent_a = eval_int(a, "import os\nreturn os.getppid()");
  int parent_b = eval_int(b, "import os\nreturn os.getppid()");
  EXPECT_EQ(parent_a, parent_b) << "one template for one configuration";
  EXPECT_EQ(forked_workers().size(), 2u);
  EXPECT_NE(parent_a, ::getpid());
  EXPECT_EQ(eval_int(a, "import os\nreturn os.getpid()"), a.os_pid());
  // A different configuration gets its own template.
  auto o = forked();
  o.environment = {{"PYVISOR_OTHER_TEMPLATE", "1"}};
  auto c = must_spawn(o);
  EXPECT_NE(eval_int(c, "import os\nreturn os.getppid()"), parent_a);
  EXPECT_EQ(c.eval("import os\nreturn os.environ['PYVISOR_OTHER_TEMPLATE']")->as<std::string>(),
            "1");
}

TEST_F(fork_server_test, a_worker_is_set_up_like_a_cold_interpreter) {
  auto cold = must_spawn(options());
  auto warm = must_spawn(forked());
  auto c = probe(cold);
  auto w = probe(warm);
  EXPECT_FALSE(c.empty());
  EXPECT_EQ(w, c);
  EXPECT_NE(w.find("True, 9, '/dev/null', False, False]"), std::string::npos) << w;
}

TEST_F(fork_server_test, limits_reach_the_worker) {
  auto o = forked();
  o.isolation.limits.open_files = 200;
  o.isolation.limits.file_size = 1 << 20;
  auto py = must_spawn(o);
  auto r = py.eval("import resource\n"
                   "return [resource.getrlimit(resource.RLIMIT_NOFILE)[0],\n"
                   "        resource.getrlimit(resource.RLIMIT_FSIZE)[0],\n"
                   "        resource.getrlimit(resource.RLIMIT_CORE)[0]]");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->as<std::vector<long>>(), (std::vector<long>{200, 1 << 20, 0}));
}

TEST_F(fork_server_test, exit_codes_and_signals_are_reported) {
  auto a = must_spawn(forked());
  auto r = a.eval("import os\nos._exit(7)");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::interpreter_exited);
  EXPECT_NE(r.error().message.find("exited with code 7"), std::string::npos) << r.error().message;
  auto b = must_spawn(forked());
  ::kill(b.os_pid(), SIGKILL);
  ASSERT_TRUE(eventually([&] { return b.state() == interpreter_state::stopped; }));
  auto rb = b.eval("return 1");
  ASSERT_FALSE(rb);
  EXPECT_NE(rb.error().message.find("killed by signal 9 (SIGKILL)"), std::string::npos)
    << rb.error().message;
}

TEST_F(fork_server_test, the_workers_process_group_dies_with_it) {
  auto py = must_spawn(forked());
  int sleeper = eval_int(py, "import subprocess\nreturn subprocess.Popen(['sleep', '60']).pid");
  ASSERT_GT(sleeper, 0);
  EXPECT_FALSE(process_gone(sleeper));
  auto r = py.eval("import os\nos._exit(0)");
  ASSERT_FALSE(r);
  EXPECT_TRUE(eventually([&] { return process_gone(sleeper); }, scaled(10s)));
}

TEST_F(fork_server_test, an_interrupt_stops_code_that_overran_its_deadline) {
  auto py = must_spawn(forked());
  eval_options eo;
  eo.timeout = 300ms;
  auto r = py.eval("import time\nwhile True:\n    time.sleep(0.01)", {}, eo);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::timeout) << r.error().to_string();
  EXPECT_EQ(py.eval("return 'alive'")->as<std::string>(), "alive");
  EXPECT_EQ(py.state(), interpreter_state::ready);
}

TEST_F(fork_server_test, workers_do_not_share_random_state) {
  auto a = must_spawn(forked());
  auto b = must_spawn(forked());
  auto code = "import random\nreturn random.getrandbits(64)";
  auto ra = a.eval(code);
  auto rb = b.eval(code);
  ASSERT_TRUE(ra && rb);
  EXPECT_NE(ra->as<std::uint64_t>(), rb->as<std::uint64_t>());
}

TEST_F(fork_server_test, preload_is_imported_by_the_template) {
  auto o = forked();
  o.preload = {"colorsys", "no_such_module_for_pyvisor"};
  auto py = must_spawn(o);
  EXPECT_TRUE(py.eval("import sys\nreturn 'colorsys' in sys.modules")->as<bool>());
  auto cold = must_spawn(options());
  EXPECT_FALSE(cold.eval("import sys\nreturn 'colorsys' in sys.modules")->as<bool>());
  // The failed import is in the log, from the template.
  EXPECT_TRUE(wait_log([](auto& l) {
    return l.label == "fork-server" && l.source == log_source::python_stderr &&
           l.line.find("preload no_such_module_for_pyvisor failed") != std::string::npos;
  }));
}

TEST_F(fork_server_test, a_killed_template_takes_its_workers_and_the_next_spawn_starts_another) {
  auto py = must_spawn(forked());
  int tmpl = eval_int(py, "import os\nreturn os.getppid()");
  ASSERT_GT(tmpl, 0);
  ::kill(tmpl, SIGKILL);
  ASSERT_TRUE(eventually([&] { return py.state() == interpreter_state::stopped; }));
  auto next = must_spawn(forked());
  EXPECT_EQ(next.eval("return 1")->as<int>(), 1);
  int tmpl2 = eval_int(next, "import os\nreturn os.getppid()");
  EXPECT_NE(tmpl2, tmpl);
  // A descendant that left the worker's group: the template's guard kills it when the
  // template dies, also when the next spawn comes at once (the guard is not cut short).
  int escaped = eval_int(next, "import os, time\n"
                               "pid = os.fork()\n"
                               "if pid == 0:\n"
                               "    try:\n"
                               "        os.setsid()\n"
                               "        time.sleep(60)\n"
                               "    finally:\n"
                               "        os._exit(0)\n"
                               "return pid");
  ASSERT_GT(escaped, 0);
  // At once this time: the template is dead but its guard may not have exited yet.
  ::kill(tmpl2, SIGKILL);
  auto third = must_spawn(forked());
  EXPECT_EQ(third.eval("return 3")->as<int>(), 3);
  EXPECT_NE(eval_int(third, "import os\nreturn os.getppid()"), tmpl2);
  EXPECT_TRUE(eventually([&] { return process_gone(escaped); }));
  if (!process_gone(escaped))
    ::kill(escaped, SIGKILL);
}

TEST_F(fork_server_test, supervised_restarts_fork_again) {
  child_spec c;
  c.id = "py";
  c.interpreter = forked();
  supervisor_spec s;
  s.name = "fork-sup";
  s.intensity = 100;
  s.period = 5s;
  s.backoff = {10ms, 100ms, 0.2, 60s};
  s.children.push_back(std::move(c));
  auto sup = rt_->supervise(std::move(s));
  ASSERT_TRUE(sup) << sup.error();
  auto py = sup->child("py");
  ASSERT_TRUE(py) << py.error();
  int first = py->os_pid();
  track_pid(first);
  int tmpl = eval_int(*py, "import os\nreturn os.getppid()");
  ::kill(first, SIGKILL);
  int next = 0;
  ASSERT_TRUE(eventually(
    [&] {
      next = py->os_pid();
      return next > 0 && next != first && py->state() == interpreter_state::ready;
    },
    scaled(30s)));
  track_pid(next);
  EXPECT_EQ(py->eval("return 'back'")->as<std::string>(), "back");
  EXPECT_EQ(eval_int(*py, "import os\nreturn os.getppid()"), tmpl) << "the same template";
}

TEST_F(fork_server_test, options_it_cannot_honour_are_refused) {
  auto o = forked();
  o.transport = transport::stdio;
  auto a = rt_->spawn_interpreter(o);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, errc::config_error);
  auto s = forked();
  s.isolation.sandbox.kind = sandbox_kind::bwrap;
  auto b = rt_->spawn_interpreter(s);
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, errc::config_error);
  EXPECT_NE(b.error().message.find("fork_server"), std::string::npos) << b.error().message;
}

TEST_F(fork_server_test, the_runtime_ends_the_template) {
  int tmpl = -1;
  {
    auto py = must_spawn(forked());
    tmpl = eval_int(py, "import os\nreturn os.getppid()");
  }
  ASSERT_GT(tmpl, 0);
  EXPECT_FALSE(process_gone(tmpl));
  rt_.reset();
  EXPECT_TRUE(eventually([&] { return process_gone(tmpl); }));
}

// The host dies by SIGKILL: the helper's interpreter is a fork-server worker; the worker, the
// descendants it started and the template all go (the template's guard kills the subtree).
TEST_F(fork_server_test, host_sigkill_kills_template_workers_and_descendants) {
  auto h = start_helper_host({PYVISOR_DESCENDANTS_HELPER, test_python(), "fork_server"},
                             scaled(30s));
  ASSERT_GT(h.pid, 0) << "cannot start " << PYVISOR_DESCENDANTS_HELPER;
  pid_t host = h.pid;
  const auto& line = h.line;
  std::vector<int> pids = h.printed;
  ::kill(host, SIGKILL);
  int status = 0;
  ASSERT_EQ(::waitpid(host, &status, 0), host);
  ASSERT_EQ(pids.size(), 4u) << "helper printed: '" << line << "'";
  // The Popen'd sleep, the setsid'd sleeper, the worker, the template.
  auto gone = [&] {
    for (int p : pids)
      if (!process_gone(p))
        return false;
    return true;
  };
  EXPECT_TRUE(eventually(gone, 5s));
  if (!gone())
    for (int p : pids)
      ::kill(p, SIGKILL);
}

// A pool of forked workers under kills and recycling: every call is answered (a value, or
// interpreter_exited for the calls on a killed worker), every restart and replacement is a fork
// of the same template.
TEST_F(fork_server_test, a_pool_of_forked_workers_survives_kills_and_recycles) {
  pool_options o;
  o.name = "forked";
  o.workers = 3;
  o.worker = forked();
  o.worker.init_script.code = "import os, time";
  o.backoff.base = 1ms;
  o.backoff.cap = 5ms;
  o.recycle.max_requests = 40;
  auto made = rt_->spawn_pool(o);
  ASSERT_TRUE(made) << made.error();
  auto& p = *made;
  auto ready_pids = [&] {
    std::set<int> out;
    for (auto& w : p.stats().per_worker)
      if (w.state == worker_stats::ready && w.pid != 0)
        out.insert(w.pid);
    return out;
  };
  std::atomic<int> answers{0}, values{0}, exited{0};
  std::mutex mu;
  std::set<long long> parents, pids;
  std::vector<std::string> odd;
  std::vector<std::thread> callers;
  for (int t = 0; t < 8; ++t)
    callers.emplace_back([&] {
      for (int i = 0; i < 60; ++i) {
        auto v = p.eval("time.sleep(0.002)\nreturn [os.getpid(), os.getppid()]");
        ++answers;
        std::lock_guard<std::mutex> g{mu};
        if (v) {
          ++values;
          auto pp = v->as<std::vector<long long>>();
          pids.insert(pp.at(0));
          parents.insert(pp.at(1));
        } else if (v.error().code == errc::interpreter_exited) {
          ++exited;
        } else {
          odd.push_back(v.error().to_string());
        }
      }
    });
  std::mt19937 rng{7};
  int kills = 0;
  for (int k = 0; k < 10; ++k) {
    auto live = ready_pids();
    if (live.empty()) {
      std::this_thread::sleep_for(20ms);  // the pacing of the chaos, not a wait for a condition
      continue;
    }
    auto it = live.begin();
    std::advance(it, static_cast<long>(rng() % live.size()));
    track_pid(*it);
    if (::kill(*it, SIGKILL) == 0)
      ++kills;
    int victim = *it;
    ASSERT_TRUE(eventually([&] { return ready_pids().count(victim) == 0; }));
    std::this_thread::sleep_for(50ms);  // the pacing of the chaos, not a wait for a condition
  }
  for (auto& t : callers)
    t.join();
  EXPECT_EQ(answers.load(), 480);
  EXPECT_EQ(values + exited, 480) << "unexpected errors, e.g. " << (odd.empty() ? "" : odd[0]);
  EXPECT_GE(kills, 5);
  ASSERT_TRUE(p.wait_ready(3, scaled(20s)));
  auto st = p.stats();
  // A kill of a worker that is being recycled (its replacement already started) is no
  // restart: each kill is one or the other.
  EXPECT_LE(st.restarts, static_cast<std::uint64_t>(kills));
  EXPECT_GE(st.restarts + st.recycled, static_cast<std::uint64_t>(kills));
  EXPECT_GE(st.recycled, 3u) << "40 requests per worker, 480 requests";
  EXPECT_GT(pids.size(), 6u);
  EXPECT_EQ(parents.size(), 1u) << "every worker is a fork of the one template";
  for (auto& w : st.per_worker)
    track_pid(w.pid);
  EXPECT_EQ(p.eval("return 'fine'")->as<std::string>(), "fine");
}

// A stop while the fork is in flight (the template is still importing a slow preload module):
// the SIGKILL of the stop sequence waits for the process instead of being lost, so the stop
// ends and nothing is left behind.
TEST_F(fork_server_test, a_stop_during_the_fork_is_not_lost) {
  temp_dir runner{"pyvisor-fork-runner"};
  ASSERT_TRUE(copy_runner(runner));
  std::ofstream(runner / "pyvisor_slow_preload.py") << "import time\ntime.sleep(0.5)\n";
  auto o = forked();
  o.runner_dir = runner.path();
  o.preload = {"pyvisor_slow_preload"};
  o.sync_start = false;
  auto py = rt_->spawn_interpreter(o);
  ASSERT_TRUE(py) << py.error();
  EXPECT_EQ(py->state(), interpreter_state::spawning);
  auto stopped = py->stop();
  EXPECT_TRUE(stopped) << stopped.error();
  EXPECT_EQ(py->state(), interpreter_state::stopped);
  EXPECT_TRUE(eventually([] { return forked_workers().empty(); }))
    << forked_workers().size() << " forked worker(s) left";
}

// A pool stopped while its workers' forks are in flight: the host may signal a worker's process
// group as soon as it has the pid, so the group must exist by then (the template creates it
// before it answers; before that fix a stop hung about one time in ten here, its SIGKILL lost
// on a group that did not exist yet).
TEST_F(fork_server_test, a_pool_stopped_with_forks_in_flight_stops_and_leaves_no_worker) {
  auto keep = must_spawn(forked());  // the template is up: forks are fast, many in flight
  for (int round = 0; round < 5; ++round) {
    pool_options o;
    o.name = "inflight";
    o.worker = forked();
    o.workers = 12;
    o.min_ready = 0;
    auto made = rt_->spawn_pool(o);
    ASSERT_TRUE(made) << made.error();
    auto stopping = std::async(std::launch::async, [p = *made]() mutable { return p.stop(); });
    if (stopping.wait_for(scaled(30s)) != std::future_status::ready) {
      for (int pid : forked_workers())
        ::kill(pid, SIGKILL);  // unblocks the stop, then fails the test
      stopping.wait();
      FAIL() << "pool::stop() did not return (round " << round << ")";
    }
    EXPECT_TRUE(stopping.get());
    EXPECT_TRUE(eventually([] { return forked_workers().size() == 1; }))
      << forked_workers().size() - 1 << " forked worker(s) of the pool left";
  }
}

// What the helper's review found (each failed before its fix): a label that is not UTF-8, data
// buffered in a file open at the end, RLIMIT_CPU, a template that writes a lot while it starts.
TEST_F(fork_server_test, a_label_that_is_not_utf8_starts_like_a_cold_one) {
  auto sibling = must_spawn(forked());
  auto o = forked();
  o.label = "caf\xe9";
  auto py = must_spawn(o);
  EXPECT_EQ(py.eval("return 1")->as<int>(), 1);
  EXPECT_EQ(sibling.eval("return 2")->as<int>(), 2) << "the template survived";
}

TEST_F(fork_server_test, a_file_left_open_is_flushed_when_the_worker_ends) {
  temp_dir dir{"pyvisor-fork-flush"};
  auto path = dir / "out.txt";
  auto py = must_spawn(forked());
  // Kept by a module (a namespace the runner does not clear at its end).
  auto r = py.eval("import sys\nsys._pyvisor_kept = open(p, 'w')\nsys._pyvisor_kept.write('hello')",
                   {{"p", path}});
  ASSERT_TRUE(r) << r.error();
  auto stopped = py.stop();
  ASSERT_TRUE(stopped) << stopped.error();
  EXPECT_EQ(read_file(path), "hello");
}

TEST_F(fork_server_test, the_cpu_limit_is_each_workers_not_the_templates) {
  auto o = forked();
  o.isolation.limits.cpu_seconds = 5;
  auto py = must_spawn(o);
  auto r = py.eval("import os, resource\n"
                   "return [list(resource.getrlimit(resource.RLIMIT_CPU)), os.getppid()]");
  ASSERT_TRUE(r) << r.error();
  auto v = r->as<msgpack::type::tuple<std::vector<long>, int>>();
  EXPECT_EQ(v.get<0>(), (std::vector<long>{5, 6}));
  auto limits = read_file("/proc/" + std::to_string(v.get<1>()) + "/limits");
  auto line = limits.substr(limits.find("Max cpu time"));
  line = line.substr(0, line.find('\n'));
  EXPECT_NE(line.find("unlimited"), std::string::npos) << line;
}

TEST_F(fork_server_test, a_template_that_writes_a_lot_while_it_starts_is_not_blocked) {
  temp_dir runner{"pyvisor-fork-runner"};
  ASSERT_TRUE(copy_runner(runner));
  std::ofstream(runner / "pyvisor_noisy_preload.py")
    << "import sys\nsys.stderr.write('x' * 200000 + '\\n')\nsys.stderr.flush()\n";
  auto o = forked();
  o.runner_dir = runner.path();
  o.preload = {"pyvisor_noisy_preload"};
  o.init_script_timeout = scaled(20s);  // the template would wait for a reader for 120 s
  auto py = must_spawn(o);
  EXPECT_EQ(py.eval("return 1")->as<int>(), 1);
  EXPECT_TRUE(wait_log([](auto& l) {
    return l.label == "fork-server" && l.line.find("xxxxxxxx") != std::string::npos;
  }));
}
