#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>

#include "pyvisor/msgpack_writer.hpp"
#include "pyvisor/value.hpp"

namespace pyvisor {

/// One argument, already encoded as msgpack. Constructible from anything msgpack-cxx can
/// pack (numbers, strings, std containers, optional, tuple, ...) and from a pyvisor::value.
class arg {
public:
  template <class T>
  arg(const T& x) { // NOLINT: implicit on purpose, so `{{"x", 3}}` works
    detail::msgpack_writer w{&bytes_};
    msgpack::pack(w, x);
  }
  arg(const char* s) : arg(std::string_view{s}) {}
  arg(const value& v) : arg(v.object()) {}

  /// An argument from bytes that already hold exactly one msgpack value (not validated here;
  /// the runner rejects malformed input with a protocol error).
  static arg from_msgpack(std::string bytes) {
    arg a{raw_tag{}};
    a.bytes_ = std::move(bytes);
    return a;
  }

  /// The msgpack encoding.
  const std::string& bytes() const noexcept { return bytes_; }

private:
  struct raw_tag {};
  explicit arg(raw_tag) {}
  std::string bytes_;
};

/// A named variable bound in Python before code runs: `{"x", 3}`.
struct var {
  std::string name;
  arg value;
};

/// Variables for init scripts and evals: `{{"x", 3}, {"name", "abc"}}`.
using vars = std::vector<var>;

} // namespace pyvisor
