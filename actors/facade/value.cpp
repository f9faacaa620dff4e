#include "pyvisor/value.hpp"

namespace pyvisor {

value::value() {
  obj_.type = msgpack::type::NIL;
}

value::value(std::shared_ptr<const void> owner, const msgpack::object& obj)
  : owner_(std::move(owner)), obj_(obj) {
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
