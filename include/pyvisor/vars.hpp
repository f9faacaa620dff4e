#pragma once

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <msgpack.hpp>

#include "pyvisor/msgpack_writer.hpp"
#include "pyvisor/value.hpp"

namespace pyvisor {

template <class T>
class ndarray_view;

/// One argument, already encoded as msgpack. Constructible from anything msgpack-cxx can
/// pack (numbers, strings, std containers, optional, tuple, ...) and from a pyvisor::value.
///
/// Large bytes without a copy: an argument made from an rvalue `std::vector<char>` or
/// `std::vector<std::uint8_t>` (`{"b", std::move(buffer)}`), from `arg::bytes_ref`, or from an
/// `ndarray_view` that keeps its memory (pyvisor/ndarray.hpp) holds the caller's bytes
/// instead of an encoded copy of them; they are copied once, when the request is written,
/// straight into the pipe or into shared memory.
class arg {
public:
  template <class T>
  arg(const T& x) { // NOLINT: implicit on purpose, so `{{"x", 3}}` works
    detail::msgpack_writer w{&bytes_};
    msgpack::pack(w, x);
    share_if_large();
  }
  /// Python `bytes` taken from `b` (moved in, not copied: see above).
  arg(std::vector<char>&& b);
  arg(std::vector<std::uint8_t>&& b);  // NOLINT: implicit like the others
  /// A numpy array (ext 7) of `v`'s items: without a copy when the view keeps its memory
  /// (`ndarray_view::from`, or made with an owner), else its bytes are copied now.
  template <class T>
  arg(const ndarray_view<T>& v);  // NOLINT: defined in pyvisor/ndarray.hpp
  /// Python `bytes` of the `size` bytes at `data`, which `owner` keeps alive (and unchanged)
  /// for as long as the argument or a copy of it lives: nothing is copied until the request
  /// is written. Throws std::length_error from 4 GiB on (a msgpack bin holds less).
  static arg bytes_ref(std::shared_ptr<const void> owner, const void* data, std::size_t size);
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

  /// The msgpack encoding (for an argument that holds the caller's bytes, made on first use
  /// and kept as long as the argument or a copy lives: a host-call answer, an argument inside
  /// `arg::list`/`tuple` or a container, CAF serialization).
  const std::string& bytes() const;

  /// The size of the msgpack encoding (never makes it).
  std::size_t encoded_size() const noexcept {
    return external_ ? external_->head.size() + external_->prefix.size() + external_->size
                     : bytes().size();
  }

  /// The encoding's shared storage when it is above 4 KiB (nullptr below, and for the
  /// caller's bytes): the runtime keeps a large argument alive with it until the argument
  /// is on its way (shared memory).
  const std::shared_ptr<const std::string>& shared_bytes() const noexcept { return shared_; }

  /// An argument that holds the caller's bytes: its encoding is `head` (a bin's header, or an
  /// ext 7's header and type byte), `prefix` (the start of the ext's payload: an ndarray's
  /// header and padding) and the `size` bytes at `data`, which `owner` keeps alive.
  struct external_body {
    std::string head;
    std::string prefix;
    std::shared_ptr<const void> owner;
    const char* data = nullptr;
    std::size_t size = 0;
    mutable std::once_flag once;  // bytes(): the whole encoding, made once
    mutable std::string whole;
  };
  /// Its parts (nullptr for an encoded argument).
  const std::shared_ptr<const external_body>& external() const noexcept { return external_; }

private:
  struct raw_tag {};
  explicit arg(raw_tag) {}
  /// An argument whose encoding is `head`, `prefix`, then `size` bytes at `data` (kept alive
  /// by `owner`); together one msgpack value (a bin, or an ext 7).
  static arg from_parts(std::string head, std::string prefix, std::shared_ptr<const void> owner,
                        const char* data, std::size_t size);
  template <class Vector>
  void take(Vector&& b);
  /// Above 4 KiB the encoding moves to `shared_`, which copies of the arg share: a braced
  /// `vars{{"b", payload}}` copies its initializer list, and a 64 MiB argument must not be
  /// copied twice more on its way into the request frame.
  void share_if_large() {
    if (bytes_.size() > 4096) {
      shared_ = std::make_shared<const std::string>(std::move(bytes_));
      bytes_ = std::string{};
    }
  }
  std::string bytes_;  // the encoding, unless shared_ or external_
  std::shared_ptr<const std::string> shared_;
  std::shared_ptr<const external_body> external_;
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
