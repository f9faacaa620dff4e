#pragma once

#include <memory>
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
    share_if_large();
  }
  /// nil (Python None).
  arg() : bytes_(1, '\xc0') {}
  arg(const char* s) : arg(std::string_view{s}) {}
  arg(const value& v) : arg(v.object()) {}

  /// An argument from bytes that hold exactly one msgpack value, checked with the same limits
  /// as frames (nesting, element counts, declared lengths); anything else is invalid_argument,
  /// and so are ext types 6 and 8 anywhere in it, tuples and sets included (shared-memory
  /// references are the runtime's own).
  static expected<arg> from_msgpack(std::string bytes);

  /// A Python list of run-time length and mixed types: `arg::list({1, "a", other_arg})`.
  static arg list(const std::vector<arg>& items);

  /// A Python tuple of run-time length and mixed types (ext 1): `arg::tuple({1, "a"})`.
  static arg tuple(const std::vector<arg>& items);

  /// The msgpack encoding.
  const std::string& bytes() const noexcept { return shared_ ? *shared_ : bytes_; }

  /// The encoding's shared storage when it is above 4 KiB (nullptr below): the runtime keeps
  /// a large argument alive with it until the argument is on its way (shared memory).
  const std::shared_ptr<const std::string>& shared_bytes() const noexcept { return shared_; }

private:
  struct raw_tag {};
  explicit arg(raw_tag) {}
  /// Above 4 KiB the encoding moves to `shared_`, which copies of the arg share: a braced
  /// `vars{{"b", payload}}` copies its initializer list, and a 64 MiB argument must not be
  /// copied twice more on its way into the request frame.
  void share_if_large() {
    if (bytes_.size() > 4096) {
      shared_ = std::make_shared<const std::string>(std::move(bytes_));
      bytes_ = std::string{};
    }
  }
  std::string bytes_;  // the encoding, unless shared_
  std::shared_ptr<const std::string> shared_;
};

} // namespace pyvisor

namespace msgpack {
MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS) {
namespace adaptor {

/// An arg packs as the value it already encodes, so containers of args (std::vector<arg>,
/// std::map<std::string, arg>, pyvisor::tuple<arg, ...>) pack without re-encoding.
template <>
struct pack<pyvisor::arg> {
  template <class Stream>
  packer<Stream>& operator()(packer<Stream>& o, const pyvisor::arg& a) const {
    // The *_body calls append bytes without a header: the arg's bytes are a whole value.
    o.pack_bin_body(a.bytes().data(), static_cast<std::uint32_t>(a.bytes().size()));
    return o;
  }
};

} // namespace adaptor
} // MSGPACK_API_VERSION_NAMESPACE(MSGPACK_DEFAULT_API_NS)
} // namespace msgpack

namespace pyvisor {

/// A named variable bound in Python before code runs: `{"x", 3}`.
struct var {
  std::string name;
  arg value;
};

/// Variables for init scripts and evals: `{{"x", 3}, {"name", "abc"}}`.
using vars = std::vector<var>;

} // namespace pyvisor
