#include <pyvisor/runtime.hpp>

#include <iostream>

int main() {
  pyvisor::runtime rt;
  auto py = rt.spawn_interpreter();
  if (!py) {
    std::cerr << py.error().to_string() << "\n";
    return 1;
  }
  auto r = py->eval("return 20 + 22");
  if (!r || r->as<int>() != 42) {
    std::cerr << "unexpected result\n";
    return 1;
  }
  // Which runner this program runs (the install test checks it is the installed one).
  auto where = py->eval("import pyvisor\nreturn pyvisor.__file__");
  if (!where) {
    std::cerr << where.error().to_string() << "\n";
    return 1;
  }
  std::cout << "runner: " << where->as<std::string>() << "\n";
  std::cout << "consumer ran\n";
  return 0;
}
