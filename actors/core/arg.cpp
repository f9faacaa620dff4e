#include "pyvisor/vars.hpp"

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
