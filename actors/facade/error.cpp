#include "pyvisor/error.hpp"

namespace pyvisor {

std::string error::to_string() const {
  std::string s{pyvisor::to_string(code)};
  s += ": ";
  s += message;
  if (!python_type.empty() && message.rfind(python_type, 0) != 0) {
    s += " (";
    s += python_type;
    s += ')';
  }
  return s;
}

} // namespace pyvisor
