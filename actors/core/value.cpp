#include "pyvisor/value.hpp"

#include <string>
#include <type_traits>

#include "core/ext_payload.hpp"
#include "core/structure_check.hpp"
#include "pyvisor/msgpack_writer.hpp"

namespace pyvisor {

namespace {

// Whether `o` holds a tuple, set or frozenset anywhere. Values deeper than the frame limit
// count as "yes" so that expand() reports them instead of this recursing without bound.
bool has_container_ext(const msgpack::object& o, std::size_t depth, std::size_t max_depth) {
  if (depth > max_depth)
    return true;
  switch (o.type) {
    case msgpack::type::EXT: return core::is_container_ext(o);
    case msgpack::type::ARRAY:
      for (std::uint32_t i = 0; i < o.via.array.size; ++i)
        if (has_container_ext(o.via.array.ptr[i], depth + 1, max_depth))
          return true;
      return false;
    case msgpack::type::MAP:
      for (std::uint32_t i = 0; i < o.via.map.size; ++i)
        if (has_container_ext(o.via.map.ptr[i].key, depth + 1, max_depth) ||
            has_container_ext(o.via.map.ptr[i].val, depth + 1, max_depth))
          return true;
      return false;
    default: return false;
  }
}

/// Builds the plain form of a value in one pass: every ext 1-3 replaced by its array, at any
/// depth. Each payload is decoded exactly once, by reference (core::decode_ext_payload), so
/// strings, binaries and inner payloads stay in the memory the value's owner already holds;
/// only object trees are allocated in the zone, and only along paths that change (copy on
/// write). The frame limits apply to the expanded value as a whole: nesting counts from the
/// value's root, a tuple's array being one level, as the runner counts it.
class expander {
public:
  explicit expander(msgpack::zone& z) : z_(z) {}

  /// Sets `out` to the plain form of `o` (at `depth` containers below the root) and returns
  /// whether it differs from `o`. Throws msgpack::unpack_error on a payload it refuses.
  bool expand(const msgpack::object& o, std::size_t depth, msgpack::object& out) {
    switch (o.type) {
      case msgpack::type::EXT: {
        if (!core::is_container_ext(o))
          return false;
        out = core::decode_ext_payload(o, z_, lim_, depth);
        // The decoded array is fresh in the zone: expand its items in place.
        for (std::uint32_t i = 0; i < out.via.array.size; ++i) {
          auto& item = out.via.array.ptr[i];
          msgpack::object x;
          if (expand(item, depth + 1, x))
            item = x;
        }
        return true;
      }
      case msgpack::type::ARRAY:
        return expand_items(o.via.array.ptr, o.via.array.size, depth, out, msgpack::type::ARRAY);
      case msgpack::type::MAP:
        return expand_items(o.via.map.ptr, o.via.map.size, depth, out, msgpack::type::MAP);
      default: return false;
    }
  }

private:
  void check_depth(std::size_t depth) const {
    if (depth >= lim_.max_depth)
      throw msgpack::depth_size_overflow("value nested deeper than " + std::to_string(lim_.max_depth));
  }

  bool expand_pair(const msgpack::object& o, std::size_t depth, msgpack::object& out) {
    return expand(o, depth, out);
  }
  bool expand_pair(const msgpack::object_kv& kv, std::size_t depth, msgpack::object_kv& out) {
    bool k = expand(kv.key, depth, out.key);
    bool v = expand(kv.val, depth, out.val);
    if (k && !v)
      out.val = kv.val;
    if (v && !k)
      out.key = kv.key;
    return k || v;
  }

  // Arrays and maps of the original object: copied into the zone only from the first item
  // that changes, so unchanged subtrees are shared, not duplicated.
  template <class Item>
  bool expand_items(Item* items, std::uint32_t n, std::size_t depth, msgpack::object& out,
                    msgpack::type::object_type type) {
    check_depth(depth);
    Item* copy = nullptr;
    for (std::uint32_t i = 0; i < n; ++i) {
      Item x;
      bool changed = expand_pair(items[i], depth + 1, x);
      if (copy == nullptr) {
        if (!changed)
          continue;
        copy = static_cast<Item*>(z_.allocate_align(sizeof(Item) * n, alignof(Item)));
        for (std::uint32_t j = 0; j < i; ++j)
          copy[j] = items[j];
      }
      copy[i] = changed ? x : items[i];
    }
    if (copy == nullptr)
      return false;
    out.type = type;
    if constexpr (std::is_same_v<Item, msgpack::object>) {
      out.via.array.size = n;
      out.via.array.ptr = copy;
    } else {
      out.via.map.size = n;
      out.via.map.ptr = copy;
    }
    return true;
  }

  msgpack::zone& z_;
  core::limits lim_;
};

} // namespace

value::value() {
  obj_.type = msgpack::type::NIL;
  plain_ = obj_;
}

value::value(std::shared_ptr<const void> owner, const msgpack::object& obj, msgpack::zone* zone)
  : owner_(std::move(owner)), obj_(obj), plain_(obj) {
  if (!has_container_ext(obj, 0, core::limits{}.max_depth))
    return;
  std::shared_ptr<std::pair<std::shared_ptr<const void>, msgpack::zone>> holder;
  if (zone == nullptr) {
    // No zone given: own one, kept alive together with the caller's owner.
    holder = std::make_shared<std::pair<std::shared_ptr<const void>, msgpack::zone>>();
    holder->first = owner_;
    zone = &holder->second;
  }
  try {
    msgpack::object expanded;
    if (expander{*zone}.expand(obj, 0, expanded))
      plain_ = expanded;
  } catch (const std::exception&) {
    // A payload over the limits or malformed stays unexpanded: conversions then fail with
    // type_mismatch, and converting it to pyvisor::tuple/set/frozenset names the violated
    // limit (the adaptors decode through the same core::decode_ext_payload).
  }
  if (holder)
    owner_ = std::move(holder);
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
        case 7: return "ndarray";
        default: return "ext";
      }
  }
  return "unknown";
}

std::string to_msgpack(const value& v) {
  std::string out;
  detail::msgpack_writer w{&out};
  msgpack::pack(w, v.object());
  return out;
}

expected<value> value_from_msgpack(std::string bytes) {
  core::limits lim;
  lim.refuse_shared_refs = true;  // a value may be passed on as an argument
  if (auto err = core::check_structure(bytes, lim))
    return make_error(errc::invalid_argument, "value_from_msgpack: " + *err);
  try {
    msgpack::unpack_limit ul(lim.max_elements, lim.max_elements, lim.max_elements,
                             lim.max_frame_bytes, lim.max_frame_bytes, lim.max_depth);
    auto oh = std::make_shared<msgpack::object_handle>(
      msgpack::unpack(bytes.data(), bytes.size(), nullptr, nullptr, ul));
    const auto& obj = oh->get();
    auto* zone = oh->zone().get();
    return value{std::shared_ptr<const void>{oh, oh.get()}, obj, zone};
  } catch (const std::exception& e) {
    return make_error(errc::invalid_argument, std::string{"value_from_msgpack: "} + e.what());
  }
}

} // namespace pyvisor
