// Quickstart: start a Python interpreter with an init script, evaluate code, see an error,
// stop. Build: cmake --build build --target quickstart; run: ./build/examples/quickstart
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <pyvisor/runtime.hpp>

int main(int argc, char** argv) {
  pyvisor::runtime rt;  // actor system + I/O thread; stops every interpreter when destroyed

  pyvisor::interpreter_options opts;
  opts.python = argc > 1 ? argv[1] : "python3";
  opts.label = "quickstart";
  // Runs once in the root namespace; every eval starts from the globals it leaves.
  opts.init_script = {"import asyncio, math\ny = 2 * x", {{"x", 3}}};
  auto py = rt.spawn_interpreter(opts);
  if (!py) {
    std::cerr << "cannot start Python: " << py.error().to_string() << "\n";
    return 1;
  }
  std::cout << "started Python " << py->python_version() << " as pid " << py->os_pid() << "\n";

  // x and y come from the init script, z is bound for this call only.
  auto r = py->eval("return x * y * z", {{"z", 2}});
  std::cout << "x * y * z = " << r->as<int>() << "\n";

  // Values convert with msgpack-cxx's adaptors.
  auto m = py->eval("return {name: len(name) for name in ['ada', 'grace']}");
  for (auto& [k, v] : m->as<std::map<std::string, int>>())
    std::cout << "len(" << k << ") = " << v << "\n";

  // Top-level await works; print() goes to the log sink (stderr by default).
  auto s = py->eval("import asyncio\nawait asyncio.sleep(0.01)\nprint('hello from Python')\n"
                    "return math.sqrt(y)");
  std::cout << "sqrt(y) = " << s->as<double>() << "\n";

  // Errors are values: a code, the Python type, message and traceback.
  auto bad = py->eval("def f(n):\n    return 1 / n\nreturn f(0)", {}, {.file = "demo.py"});
  if (!bad) {
    std::cout << "error: " << bad.error().to_string() << "\n";
    for (auto& line : bad.error().traceback)
      std::cout << "  | " << line;
  }

  // A call that takes too long is cancelled inside Python and reported as a timeout.
  auto slow = py->eval("await asyncio.sleep(10)", {}, {.timeout = std::chrono::milliseconds(100)});
  std::cout << "slow call: " << slow.error().to_string() << "\n";

  // Shutdown frame, grace period, SIGTERM, SIGKILL (whole process group), reap.
  if (auto stopped = py->stop(); !stopped)
    std::cerr << "stop: " << stopped.error().to_string() << "\n";
  std::cout << "stopped: " << pyvisor::to_string(py->state()) << "\n";
  return 0;
}
