#include "pyvisor/vars.hpp"

#include <stdexcept>

#include "core/limits.hpp"
#include "core/structure_check.hpp"
#include "pyvisor/types.hpp"

namespace pyvisor {

expected<arg> arg::from_msgpack(std::string bytes) {
  core::limits lim;
  lim.refuse_shared_refs = true;
  if (auto err = core::check_structure(bytes, lim))
    return make_error(errc::invalid_argument, "arg::from_msgpack: " + *err);
  arg a{raw_tag{}};
  a.bytes_ = std::move(bytes);
  a.share_if_large();
  return a;
}

const std::string& arg::bytes() const {
  if (!external_)
    return shared_ ? *shared_ : bytes_;
  const auto& e = *external_;
  std::call_once(e.once, [&e] {
    e.whole.reserve(e.head.size() + e.prefix.size() + e.size);
    e.whole.append(e.head);
    e.whole.append(e.prefix);
    e.whole.append(e.data, e.size);
  });
  return e.whole;
}

arg arg::from_parts(std::string head, std::string prefix, std::shared_ptr<const void> owner,
                    const char* data, std::size_t size) {
  arg a{raw_tag{}};
  auto e = std::make_shared<external_body>();
  e->head = std::move(head);
  e->prefix = std::move(prefix);
  e->owner = std::move(owner);
  e->data = data;
  e->size = size;
  a.external_ = std::move(e);
  return a;
}

namespace {

/// The msgpack bin header for `n` bytes.
std::string bin_head(std::size_t n) {
  if (n > 0xffffffffu)
    throw std::length_error("pyvisor::arg: bytes of 4 GiB or more are not a msgpack bin");
  std::string head;
  detail::msgpack_writer w{&head};
  msgpack::packer<detail::msgpack_writer> pk{w};
  pk.pack_bin(static_cast<std::uint32_t>(n));
  return head;
}

} // namespace

template <class Vector>
void arg::take(Vector&& b) {
  if (b.size() <= 4096) {  // small: encoded as before (one allocation, no owner)
    detail::msgpack_writer w{&bytes_};
    msgpack::pack(w, b);
    return;
  }
  auto owned = std::make_shared<const Vector>(std::move(b));
  const auto* data = reinterpret_cast<const char*>(owned->data());
  auto n = owned->size();
  *this = from_parts(bin_head(n), {}, std::move(owned), data, n);
}

arg::arg(std::vector<char>&& b) {
  take(std::move(b));
}

arg::arg(std::vector<std::uint8_t>&& b) {
  take(std::move(b));
}

arg arg::bytes_ref(std::shared_ptr<const void> owner, const void* data, std::size_t size) {
  return from_parts(bin_head(size), {}, std::move(owner), static_cast<const char*>(data), size);
}

arg arg::list(const std::vector<arg>& items) {
  return arg{items};
}

arg arg::tuple(const std::vector<arg>& items) {
  std::string payload;
  {
    detail::msgpack_writer w{&payload};
    msgpack::pack(w, items);
  }
  arg a{raw_tag{}};
  detail::msgpack_writer w{&a.bytes_};
  msgpack::packer<detail::msgpack_writer> pk{w};
  pk.pack_ext(payload.size(), static_cast<std::int8_t>(ext_type::tuple));
  pk.pack_ext_body(payload.data(), static_cast<std::uint32_t>(payload.size()));
  a.share_if_large();
  return a;
}

} // namespace pyvisor
