#include "pyvisor/value.hpp"

namespace pyvisor {

namespace {

bool has_container_ext(const msgpack::object& o) {
  switch (o.type) {
    case msgpack::type::EXT: return o.via.ext.type() >= 1 && o.via.ext.type() <= 3;
    case msgpack::type::ARRAY:
      for (std::uint32_t i = 0; i < o.via.array.size; ++i)
        if (has_container_ext(o.via.array.ptr[i]))
          return true;
      return false;
    case msgpack::type::MAP:
      for (std::uint32_t i = 0; i < o.via.map.size; ++i)
        if (has_container_ext(o.via.map.ptr[i].key) || has_container_ext(o.via.map.ptr[i].val))
          return true;
      return false;
    default: return false;
  }
}

// Copies `o` into `z` with every ext 1-3 replaced by its array. Depth is bounded by the frame
// limits (128) plus the ext payloads, which were produced by the runner under the same bound.
msgpack::object expand(const msgpack::object& o, msgpack::zone& z, int depth) {
  if (depth > 256)
    throw msgpack::depth_size_overflow("value nested too deeply");
  switch (o.type) {
    case msgpack::type::EXT:
      if (o.via.ext.type() >= 1 && o.via.ext.type() <= 3) {
        std::size_t off = 0;
        msgpack::unpack_limit lim(o.via.ext.size, o.via.ext.size, o.via.ext.size, o.via.ext.size,
                                  o.via.ext.size, 128);
        auto inner = msgpack::unpack(z, o.via.ext.data(), o.via.ext.size, off, nullptr, nullptr, lim);
        return expand(inner, z, depth + 1);
      }
      return o;
    case msgpack::type::ARRAY: {
      if (!has_container_ext(o))
        return o;
      msgpack::object r;
      r.type = msgpack::type::ARRAY;
      r.via.array.size = o.via.array.size;
      r.via.array.ptr = static_cast<msgpack::object*>(
        z.allocate_align(sizeof(msgpack::object) * o.via.array.size, alignof(msgpack::object)));
      for (std::uint32_t i = 0; i < o.via.array.size; ++i)
        r.via.array.ptr[i] = expand(o.via.array.ptr[i], z, depth + 1);
      return r;
    }
    case msgpack::type::MAP: {
      if (!has_container_ext(o))
        return o;
      msgpack::object r;
      r.type = msgpack::type::MAP;
      r.via.map.size = o.via.map.size;
      r.via.map.ptr = static_cast<msgpack::object_kv*>(
        z.allocate_align(sizeof(msgpack::object_kv) * o.via.map.size, alignof(msgpack::object_kv)));
      for (std::uint32_t i = 0; i < o.via.map.size; ++i) {
        r.via.map.ptr[i].key = expand(o.via.map.ptr[i].key, z, depth + 1);
        r.via.map.ptr[i].val = expand(o.via.map.ptr[i].val, z, depth + 1);
      }
      return r;
    }
    default: return o;
  }
}

} // namespace

value::value() {
  obj_.type = msgpack::type::NIL;
  plain_ = obj_;
}

value::value(std::shared_ptr<const void> owner, const msgpack::object& obj, msgpack::zone* zone)
  : owner_(std::move(owner)), obj_(obj), plain_(obj) {
  if (has_container_ext(obj)) {
    if (zone == nullptr) {
      // No zone given: own one, kept alive together with the caller's owner.
      auto holder = std::make_shared<std::pair<std::shared_ptr<const void>, msgpack::zone>>();
      holder->first = owner_;
      try {
        plain_ = expand(obj, holder->second, 0);
      } catch (const std::exception&) {
        plain_ = obj;  // malformed payload: conversions will fail with type errors
      }
      owner_ = holder;
    } else {
      try {
        plain_ = expand(obj, *zone, 0);
      } catch (const std::exception&) {
        plain_ = obj;
      }
    }
  }
}

const char* value::type_name() const noexcept {
  switch (obj_.type) {
    case msgpack::type::NIL: return "nil";
    case msgpack::type::BOOLEAN: return "bool";
    case msgpack::type::POSITIVE_INTEGER:
    case msgpack::type::NEGATIVE_INTEGER: return "int";
    case msgpack::type::FLOAT32:
    case msgpack::type::FLOAT64: return "float";
    case msgpack::type::STR: return "str";
    case msgpack::type::BIN: return "bin";
    case msgpack::type::ARRAY: return "array";
    case msgpack::type::MAP: return "map";
    case msgpack::type::EXT:
      switch (obj_.via.ext.type()) {
        case 1: return "tuple";
        case 2: return "set";
        case 3: return "frozenset";
        case 4: return "bigint";
        default: return "ext";
      }
  }
  return "unknown";
}

} // namespace pyvisor
