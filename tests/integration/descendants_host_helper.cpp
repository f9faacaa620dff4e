// Test helper for descendants_test (host death): a host with one interpreter that started
// `sleep 30` (subprocess.Popen, in the runner's process group) and a setsid'd sleeper. Prints
// "<sleep pid> <setsid pid> <runner pid>\n" on stdout, then waits to be SIGKILLed.
// Usage: descendants_host_helper PYTHON [fork_server]
// With fork_server the interpreter is a fork-server worker and the template's pid is printed
// fourth.
#include <unistd.h>

#include <cstdio>
#include <string>

#include "pyvisor/runtime.hpp"

int main(int argc, char** argv) {
  if (argc < 2)
    return 2;
  pyvisor::runtime rt;
  pyvisor::interpreter_options o;
  o.python = argv[1];
  bool forked = argc > 2 && std::string{argv[2]} == "fork_server";
  if (forked)
    o.spawn = pyvisor::spawn_mode::fork_server;
  auto py = rt.spawn_interpreter(o);
  if (!py) {
    std::fprintf(stderr, "spawn: %s\n", py.error().to_string().c_str());
    return 1;
  }
  auto r = py->eval(R"PY(
import os, subprocess, time
popen_child = subprocess.Popen(['sleep', '30'])
pid = os.fork()
if pid == 0:
    try:
        os.setsid()
        time.sleep(30)
    finally:
        os._exit(0)
return [popen_child.pid, pid, os.getpid(), os.getppid()]
)PY");
  if (!r) {
    std::fprintf(stderr, "eval: %s\n", r.error().to_string().c_str());
    return 1;
  }
  auto pids = r->as<std::vector<int>>();
  if (forked)
    std::printf("%d %d %d %d\n", pids.at(0), pids.at(1), pids.at(2), pids.at(3));
  else
    std::printf("%d %d %d\n", pids.at(0), pids.at(1), pids.at(2));
  std::fflush(stdout);
  for (;;)
    ::pause();
}
