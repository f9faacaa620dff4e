#include "pyvisor/error.hpp"

namespace pyvisor {

std::string error::to_string() const {
  auto name = pyvisor::to_string(code);
  bool with_type = !python_type.empty() && message.rfind(python_type, 0) != 0;
  std::string s;
  s.reserve(name.size() + message.size() + python_type.size() + 5);
  s.append(name).append(": ").append(message);
  if (with_type)
    s.append(" (").append(python_type).append(")");
  return s;
}

} // namespace pyvisor
