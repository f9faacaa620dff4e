#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "pyvisor/errc.hpp"

namespace pyvisor {

/// An error as reported by every pyvisor call. Python errors carry the exception's type,
/// message and traceback (one entry per formatted line group, as Python prints them).
struct error {
  errc code = errc::none;
  std::string message;
  std::string python_type;             ///< e.g. "ZeroDivisionError"; empty for host errors.
  std::vector<std::string> traceback;  ///< Without pyvisor's own frames.

  /// One line: "<code>: <message>" (plus " (<python_type>)" when set).
  std::string to_string() const;
};

/// Writes to_string(), then the traceback lines.
std::ostream& operator<<(std::ostream& os, const error& e);

/// Makes an error without Python details.
inline error make_error(errc code, std::string message) {
  return error{code, std::move(message), {}, {}};
}

} // namespace pyvisor
