#include "protocol/message.hpp"

#include "protocol/frame_reader.hpp"
#include "core/structure_check.hpp"

namespace pyvisor::protocol {

std::string frame_builder::finish() && {
  if (!slots_.empty())
    return std::move(*this).finish_out().inline_frame();
  put_length(buf_.data(), static_cast<std::uint32_t>(buf_.size() - 4));
  return std::move(buf_);
}

frame_out frame_builder::finish_out() && {
  // The length of the body with its references (what the shared-memory path sends).
  put_length(buf_.data(), static_cast<std::uint32_t>(buf_.size() - 4));
  frame_out f;
  f.bytes = std::move(buf_);
  f.slots = std::move(slots_);
  return f;
}

namespace {

/// The size of the header (with an ext's type byte) at the start of `enc` when it is a bin
/// or an ext 7 (ndarray); 0 for anything else.
std::size_t slot_header(std::string_view enc) noexcept {
  if (enc.size() < 6)
    return 0;
  std::size_t head = 0;
  switch (static_cast<unsigned char>(enc[0])) {
    case 0xc4: return 2;
    case 0xc5: return 3;
    case 0xc6: return 5;
    case 0xc7: head = 3; break;
    case 0xc8: head = 4; break;
    case 0xc9: head = 6; break;
    default: return 0;
  }
  return enc[head - 1] == ext_ndarray ? head : 0;
}

} // namespace

void frame_builder::argument(const arg& a) {
  shared_slot s;
  if (const auto& e = a.external()) {  // the caller's bytes
    s.head = e->head;
    s.prefix = e->prefix;
    s.data = e->data;
    s.size = e->size;
    s.keep = e;
  } else if (const auto& shared = a.shared_bytes()) {
    if (std::size_t head = slot_header(*shared)) {
      s.head = shared->substr(0, head);
      s.data = shared->data() + head;
      s.size = shared->size() - head;
      s.keep = shared;
    }
  }
  if (!s.keep) {  // small, or not bytes or an array
    buf_.append(a.bytes());
    return;
  }
  // A bin's or an ext 7's header either way (arg::external_body makes only those).
  if (slot_min_ == 0 || s.size < slot_min_) {
    buf_.append(s.head);
    buf_.append(s.prefix);
    buf_.append(s.data, s.size);
    return;
  }
  auto c = static_cast<unsigned char>(s.head[0]);
  s.ndarray = c >= 0xc7 && c <= 0xc9;
  s.at = buf_.size();
  char ref[shared_ref_size];
  put_shared_ref(ref, 0, s.prefix.size() + s.size, s.ndarray ? ext_shared_ndarray : ext_shared_bytes);
  slots_.push_back(std::move(s));
  buf_.append(ref, sizeof ref);
}

void put_shared_ref(char* out, std::uint64_t offset, std::uint64_t length, std::int8_t type) noexcept {
  out[0] = static_cast<char>(0xd8);
  out[1] = static_cast<char>(type);
  for (int i = 0; i < 8; ++i) {
    out[2 + i] = static_cast<char>(offset >> (56 - 8 * i));
    out[10 + i] = static_cast<char>(length >> (56 - 8 * i));
  }
}

bool get_shared_ref(const msgpack::object& o, std::uint64_t& offset, std::uint64_t& length) noexcept {
  if (o.type != msgpack::type::EXT || o.via.ext.size != 16 ||
      (o.via.ext.type() != ext_shared_bytes && o.via.ext.type() != ext_shared_ndarray))
    return false;
  const auto* p = reinterpret_cast<const unsigned char*>(o.via.ext.data());
  offset = length = 0;
  for (int i = 0; i < 8; ++i) {
    offset = (offset << 8) | p[i];
    length = (length << 8) | p[8 + i];
  }
  return true;
}

std::size_t frame_out::body_size() const noexcept {
  std::size_t n = bytes.size() - 4;
  for (const auto& s : slots)
    n += s.head.size() + s.prefix.size() + s.size - shared_ref_size;
  return n;
}

std::string frame_out::inline_frame() && {
  if (slots.empty())
    return std::move(bytes);
  std::string out;
  std::size_t size = body_size() + 4;
  if (size >= detail::large_bytes)
    detail::reserve_large(out, size);
  else
    out.reserve(size);
  std::size_t from = 0;
  for (const auto& s : slots) {
    out.append(bytes, from, s.at - from);
    out.append(s.head);
    out.append(s.prefix);
    out.append(s.data, s.size);
    from = s.at + shared_ref_size;
  }
  out.append(bytes, from, std::string::npos);
  put_length(out.data(), static_cast<std::uint32_t>(out.size() - 4));
  return out;
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

std::shared_ptr<const void> message::owner() const {
  if (!buffer && !lease)
    return zone;
  struct all {
    std::shared_ptr<msgpack::zone> zone;
    std::shared_ptr<const char[]> buffer;
    std::shared_ptr<const void> lease;
  };
  return std::make_shared<all>(all{zone, buffer, lease});
}

namespace {

bool reference_everything(msgpack::type::object_type, std::size_t, void*) {
  return true;
}

} // namespace

std::variant<message, std::string> decode(std::string_view body, const limits& lim,
                                          std::shared_ptr<const char[]> buffer) {
  if (auto err = core::check_structure(body, lim))
    return std::move(*err);
  // The structure check bounds every count by the frame size; these limits are the second
  // line of defence inside msgpack-cxx itself.
  auto cap = body.size();
  msgpack::unpack_limit ul(cap, cap, cap, cap, cap, lim.max_depth);
  msgpack::object_handle oh;
  try {
    oh = msgpack::unpack(body.data(), body.size(), buffer ? &reference_everything : nullptr,
                         nullptr, ul);
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
  m.buffer = std::move(buffer);
  return m;
}

namespace {

std::uint32_t extra_count(const request_extras& x) {
  return (x.env != 0 ? 1u : 0u) + (x.capture ? 1u : 0u) +
         (x.bytes_as_bytearray || x.bytes_as_memoryview ? 1u : 0u);
}

void pack_extras(msgpack::packer<detail::msgpack_writer>& pk, const request_extras& x) {
  if (x.env != 0) {
    pk.pack(std::string_view{"env"});
    pk.pack(x.env);
  }
  if (x.capture) {
    pk.pack(std::string_view{"capture"});
    pk.pack(true);
  }
  if (x.bytes_as_bytearray || x.bytes_as_memoryview) {
    pk.pack(std::string_view{"bytes_as"});
    pk.pack(std::string_view{x.bytes_as_memoryview ? "memoryview" : "bytearray"});
  }
}

/// What `a` takes in a frame whose slots start at `slots_from` bytes (an upper bound).
std::size_t inline_size(const arg& a, std::size_t slots_from) {
  auto n = a.encoded_size();
  return slots_from != 0 && n >= slots_from ? shared_ref_size : n;
}

std::size_t vars_size(const vars& v, std::size_t slots_from = 0) {
  std::size_t n = 8;
  for (const auto& x : v)
    n += x.name.size() + inline_size(x.value, slots_from) + 8;
  return n;
}

void pack_vars(frame_builder& fb, const vars& v) {
  auto& pk = fb.packer();
  pk.pack_map(static_cast<std::uint32_t>(v.size()));
  for (const auto& x : v) {
    pk.pack(std::string_view{x.name});
    fb.argument(x.value);
  }
}

void pack_header(msgpack::packer<detail::msgpack_writer>& pk, int kind, std::uint64_t id,
                 std::string_view op) {
  pk.pack_array(4);
  pk.pack(kind);
  pk.pack(id);
  pk.pack(op);
}

} // namespace

std::string encode_code_request(std::uint64_t id, std::string_view op, std::string_view code,
                                const vars& v, std::string_view file, int line,
                                const request_extras& x) {
  return encode_code_request_out(id, op, code, v, file, line, x).inline_frame();
}

frame_out encode_code_request_out(std::uint64_t id, std::string_view op, std::string_view code,
                                  const vars& v, std::string_view file, int line,
                                  const request_extras& x) {
  frame_builder fb{64 + code.size() + file.size() + op.size() +
                   vars_size(v, x.slots_from)};
  fb.slots_from(x.slots_from);
  auto& pk = fb.packer();
  pack_header(pk, 0, id, op);
  // Key order is part of the golden frames (tests/data/golden): code, vars, file, line.
  pk.pack_map(4 + extra_count(x));
  pk.pack(std::string_view{"code"});
  pk.pack(code);
  pk.pack(std::string_view{"vars"});
  pack_vars(fb, v);
  pk.pack(std::string_view{"file"});
  pk.pack(file);
  pk.pack(std::string_view{"line"});
  pk.pack(line);
  pack_extras(pk, x);
  return std::move(fb).finish_out();
}

std::string encode_call(std::uint64_t id, std::string_view name, const std::vector<arg>& args,
                        const vars& kwargs, const request_extras& x) {
  return encode_call_out(id, name, args, kwargs, x).inline_frame();
}

frame_out encode_call_out(std::uint64_t id, std::string_view name, const std::vector<arg>& args,
                          const vars& kwargs, const request_extras& x) {
  std::size_t size = 64 + name.size() + vars_size(kwargs, x.slots_from);
  for (const auto& a : args)
    size += inline_size(a, x.slots_from);
  frame_builder fb{size};
  fb.slots_from(x.slots_from);
  auto& pk = fb.packer();
  pack_header(pk, 0, id, "call");
  pk.pack_map(3 + extra_count(x));
  pk.pack(std::string_view{"name"});
  pk.pack(name);
  pk.pack(std::string_view{"args"});
  pk.pack_array(static_cast<std::uint32_t>(args.size()));
  for (const auto& a : args)
    fb.argument(a);
  pk.pack(std::string_view{"kwargs"});
  pack_vars(fb, kwargs);
  pack_extras(pk, x);
  return std::move(fb).finish_out();
}

std::string encode_make_env(std::uint64_t id, std::uint64_t env, const std::vector<env_spec>& from,
                            const vars& v) {
  frame_builder fb;
  auto& pk = fb.packer();
  pack_header(pk, 0, id, "make_env");
  pk.pack_map(3);
  pk.pack(std::string_view{"env"});
  pk.pack(env);
  pk.pack(std::string_view{"from"});
  pk.pack_array(static_cast<std::uint32_t>(from.size()));
  for (const auto& f : from) {
    pk.pack_map(3);
    pk.pack(std::string_view{"env"});
    pk.pack(f.env);
    pk.pack(std::string_view{"only"});
    if (f.only)
      pk.pack(*f.only);
    else
      pk.pack_nil();
    pk.pack(std::string_view{"except"});
    if (f.except)
      pk.pack(*f.except);
    else
      pk.pack_nil();
  }
  pk.pack(std::string_view{"vars"});
  pack_vars(fb, v);
  return std::move(fb).finish();
}

std::string encode_drop_env(std::uint64_t env) {
  frame_builder fb;
  auto& pk = fb.packer();
  pack_header(pk, 2, 0, "drop_env");
  pk.pack_map(1);
  pk.pack(std::string_view{"env"});
  pk.pack(env);
  return std::move(fb).finish();
}

std::string encode_ok_response(std::uint64_t id, std::string_view op, const arg& v) {
  frame_builder fb{32 + op.size() + v.bytes().size()};
  auto& pk = fb.packer();
  pack_header(pk, 1, id, op);
  pk.pack_map(1);
  pk.pack(std::string_view{"ok"});
  fb.raw(v.bytes());
  return std::move(fb).finish();
}

std::string encode_error_response(std::uint64_t id, std::string_view op, std::string_view code,
                                  std::string_view type, std::string_view message) {
  frame_builder fb;
  auto& pk = fb.packer();
  pack_header(pk, 1, id, op);
  pk.pack_map(1);
  pk.pack(std::string_view{"error"});
  pk.pack_map(4);
  pk.pack(std::string_view{"code"});
  pk.pack(code);
  pk.pack(std::string_view{"type"});
  pk.pack(type);
  pk.pack(std::string_view{"message"});
  pk.pack(message);
  pk.pack(std::string_view{"traceback"});
  pk.pack_array(0);
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

std::string encode_shm_free(const std::vector<std::uint64_t>& offsets) {
  frame_builder fb{32 + 9 * offsets.size()};
  auto& pk = fb.packer();
  pack_header(pk, 2, 0, "shm_free");
  pk.pack(offsets);
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

reply parse_response(const message& m) {
  reply r{make_error(errc::protocol_error, "response without 'ok' or 'error'")};
  if (auto out = map_get(m.payload, "stdout"); out && out->type == msgpack::type::STR)
    r.out.emplace(out->via.str.ptr, out->via.str.size);
  if (auto er = map_get(m.payload, "stderr"); er && er->type == msgpack::type::STR)
    r.err.emplace(er->via.str.ptr, er->via.str.size);
  if (auto ok = map_get(m.payload, "ok")) {
    r.result = value{m.owner(), *ok, m.zone.get()};
    return r;
  }
  auto err = map_get(m.payload, "error");
  if (err == nullptr || err->type != msgpack::type::MAP)
    return r;
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
  r.result = std::move(e);
  return r;
}

} // namespace pyvisor::protocol
