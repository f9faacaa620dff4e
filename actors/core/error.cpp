#include "pyvisor/error.hpp"

#include <ostream>

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

std::ostream& operator<<(std::ostream& os, const error& e) {
  os << e.to_string();
  for (const auto& line : e.traceback)
    os << "\n  " << line;
  return os;
}

} // namespace pyvisor
