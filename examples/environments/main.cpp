// Environments: namespaces cloned from the init script's root, that keep state across calls.
// Build: cmake --build build --target environments; run: ./build/examples/environments
#include <cstdlib>
#include <iostream>
#include <string>
#include <vector>

#include <pyvisor/runtime.hpp>

namespace {

// Evaluates in `e`, exiting with the error when there is one (errors are values in pyvisor).
pyvisor::value run(pyvisor::env& e, std::string_view code, const pyvisor::vars& v = {}) {
  auto r = e.eval(code, v);
  if (!r) {
    std::cerr << r.error().to_string() << "\n";
    std::exit(1);
  }
  return *r;
}

} // namespace

int main() {
  pyvisor::runtime rt;
  pyvisor::interpreter_options opts;
  opts.init_script = {"import statistics\nunits = 'ms'"};
  auto py = rt.spawn_interpreter(opts);
  if (!py) {
    std::cerr << py.error().to_string() << "\n";
    return 1;
  }

  // Two sessions with their own state; both see `statistics` and `units` from root.
  auto alice = py->make_env({.vars = {{"user", "alice"}}});
  auto bob = py->make_env({.vars = {{"user", "bob"}}});
  if (!alice || !bob)
    return 1;
  run(*alice, "samples = []");
  run(*bob, "samples = []");
  for (double x : {12.0, 15.5, 11.0})
    run(*alice, "samples.append(x)", {{"x", x}});
  run(*bob, "samples.append(99.0)");

  auto report = "return f'{user}: mean {statistics.mean(samples):.1f} {units} of {len(samples)}'";
  std::cout << run(*alice, report).as<std::string>() << "\n";
  std::cout << run(*bob, report).as<std::string>() << "\n";

  // A new env from alice's, but only her samples; then call a function by name.
  auto copy = py->make_env({.from = {{*alice, std::vector<std::string>{"samples"}}}});
  if (!copy)
    return 1;
  auto median = copy->call("statistics.median", {run(*copy, "return samples")});
  std::cout << "median of alice's samples: " << median->as<double>() << "\n";

  // Dropping the last handle frees the namespace in Python; destroy() does it now.
  bob->destroy();
  auto gone = bob->eval("return samples");
  std::cout << "after destroy: " << gone.error().to_string() << "\n";
  return 0;
}
