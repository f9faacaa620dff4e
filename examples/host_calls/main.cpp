// Python -> host: Python code awaits C++ functions the host exposed.
// Build: cmake --build build --target host_calls; run: ./build/examples/host_calls
#include <iostream>
#include <map>
#include <mutex>
#include <string>

#include <pyvisor/runtime.hpp>

int main() {
  pyvisor::runtime rt;
  std::mutex mu;
  std::map<std::string, int> inventory{{"apples", 3}, {"pears", 0}};
  // Typed host functions: arguments are converted, the result packed.
  rt.expose("stock", [&](const std::string& item) {
    std::lock_guard<std::mutex> g{mu};
    return inventory[item];
  });
  rt.expose("reserve", [&](const std::string& item, int n) -> pyvisor::expected<int> {
    std::lock_guard<std::mutex> g{mu};
    if (inventory[item] < n)
      return pyvisor::make_error(pyvisor::errc::invalid_argument, "not enough " + item);
    return inventory[item] -= n;
  });

  auto py = rt.spawn_interpreter();
  if (!py) {
    std::cerr << py.error().to_string() << "\n";
    return 1;
  }
  auto r = py->eval(R"(
import asyncio
counts = await asyncio.gather(pyvisor.call('stock', 'apples'), pyvisor.call('stock', 'pears'))
left = await pyvisor.call('reserve', 'apples', 2)
try:
    await pyvisor.call('reserve', 'pears', 1)
except pyvisor.HostError as e:
    problem = str(e)
return {'counts': list(counts), 'apples_left': left, 'problem': problem}
)");
  if (!r) {
    std::cerr << r.error().to_string() << "\n";
    return 1;
  }
  auto m = r->as<std::map<std::string, msgpack::object>>();
  std::cout << "apples left: " << m["apples_left"].as<int>() << "\n";
  std::cout << "problem: " << m["problem"].as<std::string>() << "\n";
  return 0;
}
