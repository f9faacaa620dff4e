#include "protocol/message.hpp"

#include "protocol/frame_reader.hpp"
#include "protocol/structure_check.hpp"

namespace pyvisor::protocol {

std::string frame_builder::finish() && {
  put_length(buf_.data(), static_cast<std::uint32_t>(buf_.size() - 4));
  return std::move(buf_);
}

const msgpack::object* map_get(const msgpack::object& map, std::string_view key) noexcept {
  if (map.type != msgpack::type::MAP)
    return nullptr;
  for (std::uint32_t i = 0; i < map.via.map.size; ++i) {
    const auto& kv = map.via.map.ptr[i];
    if (kv.key.type == msgpack::type::STR &&
        std::string_view{kv.key.via.str.ptr, kv.key.via.str.size} == key)
      return &kv.val;
  }
  return nullptr;
}

std::string map_string(const msgpack::object& map, std::string_view key, std::string fallback) {
  auto v = map_get(map, key);
  if (v == nullptr || v->type != msgpack::type::STR)
    return fallback;
  return std::string{v->via.str.ptr, v->via.str.size};
}

std::variant<message, std::string> decode(std::string_view body, const limits& lim) {
  if (auto err = check_structure(body, lim))
    return std::move(*err);
  // The structure check bounds every count by the frame size; these limits are the second
  // line of defence inside msgpack-cxx itself.
  auto cap = body.size();
  msgpack::unpack_limit ul(cap, cap, cap, cap, cap, lim.max_depth);
  msgpack::object_handle oh;
  try {
    oh = msgpack::unpack(body.data(), body.size(), nullptr, nullptr, ul);
  } catch (const std::exception& e) {
    return std::string{"undecodable msgpack: "} + e.what();
  }
  const auto& o = oh.get();
  if (o.type != msgpack::type::ARRAY || o.via.array.size != 4)
    return std::string{"frame body is not an array of 4 elements"};
  const auto* e = o.via.array.ptr;
  if (e[0].type != msgpack::type::POSITIVE_INTEGER || e[0].via.u64 > 2)
    return std::string{"invalid frame kind"};
  if (e[1].type != msgpack::type::POSITIVE_INTEGER)
    return std::string{"invalid frame id"};
  if (e[2].type != msgpack::type::STR)
    return std::string{"invalid frame op"};
  message m;
  m.kind = static_cast<kind>(e[0].via.u64);
  m.id = e[1].via.u64;
  m.op.assign(e[2].via.str.ptr, e[2].via.str.size);
  m.payload = e[3];
  m.zone = std::shared_ptr<msgpack::zone>(oh.zone().release());
  return m;
}

std::string encode_code_request(std::uint64_t id, std::string_view op, std::string_view code,
                                const vars& v, std::string_view file, int line) {
  frame_builder fb;
  auto& pk = fb.packer();
  pk.pack_array(4);
  pk.pack(0);
  pk.pack(id);
  pk.pack(op);
  pk.pack_map(4);
  pk.pack(std::string_view{"code"});
  pk.pack(code);
  pk.pack(std::string_view{"vars"});
  pk.pack_map(static_cast<std::uint32_t>(v.size()));
  for (const auto& x : v) {
    pk.pack(std::string_view{x.name});
    fb.raw(x.value.bytes());
  }
  pk.pack(std::string_view{"file"});
  pk.pack(file);
  pk.pack(std::string_view{"line"});
  pk.pack(line);
  return std::move(fb).finish();
}

std::string encode_empty_request(std::uint64_t id, std::string_view op) {
  frame_builder fb;
  auto& pk = fb.packer();
  pk.pack_array(4);
  pk.pack(0);
  pk.pack(id);
  pk.pack(op);
  pk.pack_map(0);
  return std::move(fb).finish();
}

std::string encode_cancel(std::uint64_t id) {
  frame_builder fb;
  auto& pk = fb.packer();
  pk.pack_array(4);
  pk.pack(2);
  pk.pack(0);
  pk.pack(std::string_view{"cancel"});
  pk.pack_map(1);
  pk.pack(std::string_view{"id"});
  pk.pack(id);
  return std::move(fb).finish();
}

std::string encode_shutdown() {
  frame_builder fb;
  auto& pk = fb.packer();
  pk.pack_array(4);
  pk.pack(2);
  pk.pack(0);
  pk.pack(std::string_view{"shutdown"});
  pk.pack_map(0);
  return std::move(fb).finish();
}

expected<value> parse_response(const message& m) {
  if (auto ok = map_get(m.payload, "ok"))
    return value{m.zone, *ok};
  auto err = map_get(m.payload, "error");
  if (err == nullptr || err->type != msgpack::type::MAP)
    return make_error(errc::protocol_error, "response without 'ok' or 'error'");
  error e;
  auto code = map_string(*err, "code", "python_exception");
  e.code = errc_from_string(code).value_or(errc::python_exception);
  e.message = map_string(*err, "message");
  e.python_type = map_string(*err, "type");
  if (auto tb = map_get(*err, "traceback"); tb != nullptr && tb->type == msgpack::type::ARRAY) {
    for (std::uint32_t i = 0; i < tb->via.array.size; ++i) {
      const auto& line = tb->via.array.ptr[i];
      if (line.type == msgpack::type::STR)
        e.traceback.emplace_back(line.via.str.ptr, line.via.str.size);
    }
  }
  return e;
}

} // namespace pyvisor::protocol
