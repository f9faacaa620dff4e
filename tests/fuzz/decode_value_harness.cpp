// Fuzz harness: one frame body through protocol::decode (both the copying path of small frames
// and the referencing path of large ones) and parse_response, then every conversion a user can
// ask of the resulting pyvisor::value, and a walk of everything plain() exposes (so the
// sanitizers see every byte a view points at).
#include <cstring>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "fuzz/harness.hpp"
#include "core/ext_payload.hpp"
#include "protocol/message.hpp"
#include "core/structure_check.hpp"
#include "pyvisor/ndarray.hpp"
#include "pyvisor/types.hpp"
#include "pyvisor/value.hpp"

namespace pyvisor::fuzz {

namespace {

// Sums every byte a str/bin/ext view points at, and recurses; a stale or out-of-bounds view
// is then an ASan report instead of a silent read.
std::size_t walk(const msgpack::object& o, std::size_t depth) {
  PYVISOR_FUZZ_CHECK(depth < 1024);
  std::size_t sum = 0;
  auto touch = [&](const char* p, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i)
      sum += static_cast<unsigned char>(p[i]);
  };
  switch (o.type) {
    case msgpack::type::STR: touch(o.via.str.ptr, o.via.str.size); break;
    case msgpack::type::BIN: touch(o.via.bin.ptr, o.via.bin.size); break;
    case msgpack::type::EXT:
      touch(o.via.ext.ptr, o.via.ext.size + 1);
      if (core::is_container_ext(o)) {
        // Left unexpanded (the expansion refused it): the shared decoder must refuse it too
        // or decode it within the limits.
        msgpack::zone z;
        try {
          sum += walk(core::decode_ext_payload(o, z), depth + 1);
        } catch (const msgpack::unpack_error&) {
        }
      }
      break;
    case msgpack::type::ARRAY:
      for (std::uint32_t i = 0; i < o.via.array.size; ++i)
        sum += walk(o.via.array.ptr[i], depth + 1);
      break;
    case msgpack::type::MAP:
      for (std::uint32_t i = 0; i < o.via.map.size; ++i)
        sum += walk(o.via.map.ptr[i].key, depth + 1) + walk(o.via.map.ptr[i].val, depth + 1);
      break;
    default: break;
  }
  return sum;
}

template <class T>
void convert(const value& v) {
  auto r = v.to<T>();
  if (!r)
    PYVISOR_FUZZ_CHECK(r.error().code == errc::type_mismatch && !r.error().message.empty());
}

// Conversions whose result holds views (msgpack::object): walk them while `v` lives.
template <class T, class F>
void convert_and(const value& v, F&& each) {
  auto r = v.to<T>();
  if (r)
    each(*r);
}

std::size_t sink = 0;

void exercise(const value& v, int budget);

void exercise_all(const value& v) {
  (void) v.type_name();
  (void) v.is_nil();
  sink += walk(v.plain(), 0);
  sink += walk(v.object(), 0);
  // Scalars.
  convert<bool>(v);
  convert<int>(v);
  convert<std::int64_t>(v);
  convert<std::uint64_t>(v);
  convert<std::uint8_t>(v);
  convert<double>(v);
  convert<float>(v);
  convert<std::string>(v);
  convert<std::vector<char>>(v);
  convert<std::optional<int>>(v);
  convert<std::optional<std::string>>(v);
  // std containers (read the expanded form of tuples and sets).
  convert<std::vector<int>>(v);
  convert<std::vector<std::string>>(v);
  convert<std::vector<std::vector<double>>>(v);
  convert<std::set<std::int64_t>>(v);
  convert<std::map<std::string, std::string>>(v);
  convert<std::map<std::int64_t, std::vector<int>>>(v);
  convert<std::map<std::vector<int>, std::vector<std::vector<int>>>>(v);
  convert<std::tuple<>>(v);
  convert<std::tuple<int, std::string>>(v);
  convert<std::tuple<std::string, std::tuple<double, bool>, std::vector<int>>>(v);
  convert_and<std::vector<msgpack::object>>(v, [](const auto& xs) {
    for (const auto& x : xs)
      sink += walk(x, 0);
  });
  convert_and<std::map<std::string, msgpack::object>>(v, [](const auto& m) {
    for (const auto& [k, x] : m)
      sink += k.size() + walk(x, 0);
  });
  convert_and<msgpack::object>(v, [](const auto& x) { sink += walk(x, 0); });
  // pyvisor's own types.
  convert<pyvisor::tuple<int>>(v);
  convert<pyvisor::tuple<int, std::string, double>>(v);
  convert<pyvisor::tuple<pyvisor::tuple<int, int>, pyvisor::set<int>>>(v);
  convert<pyvisor::tuple<std::vector<pyvisor::tuple<std::string>>>>(v);
  convert<pyvisor::set<int>>(v);
  convert<pyvisor::set<std::string>>(v);
  convert<pyvisor::set<pyvisor::tuple<int, int>>>(v);
  convert<pyvisor::frozenset<std::int64_t>>(v);
  convert<pyvisor::frozenset<pyvisor::frozenset<int>>>(v);
  convert<std::vector<pyvisor::host_handle>>(v);
  convert<std::map<std::string, pyvisor::bigint>>(v);
  if (auto h = v.to<pyvisor::host_handle>())
    sink += h->bytes.size();
  // ndarrays: the header parse, and every item a typed view reaches.
  if (auto hd = pyvisor::ndarray_header_of(v))
    sink += hd->dtype.size() + hd->shape.size();
  if (auto a = pyvisor::ndarray_view<std::uint8_t>::from(v)) {
    auto extent = pyvisor::detail::ndarray_extent(a->shape(), a->strides(), 1);
    PYVISOR_FUZZ_CHECK(extent.has_value());
    const auto* bytes = reinterpret_cast<const char*>(a->data());
    for (std::size_t i = 0; i < *extent; ++i)
      sink += static_cast<unsigned char>(bytes[i]);
  }
  if (auto a = pyvisor::ndarray_view<double>::from(v); a && a->contiguous())
    for (double x : a->span())
      sink += x > 0;
  if (auto b = v.to<pyvisor::bigint>()) {
    sink += b->to_string().size();
    (void) b->to_int64();
    (void) b->to_uint64();
    // Round trip through the decimal form.
    auto again = pyvisor::bigint::from_string(b->to_string());
    PYVISOR_FUZZ_CHECK(again && *again == *b);
  }
  if (auto bs = v.to<std::vector<pyvisor::bigint>>())
    for (const auto& b : *bs)
      sink += b.to_string().size();
  // The throwing convenience throws only msgpack/std exceptions.
  try {
    sink += static_cast<std::size_t>(v.as<std::int64_t>());
  } catch (const std::exception&) {
  }
}

// The value itself, then values made from its first few raw elements (each expands on its own,
// from a different depth).
void exercise(const value& v, int budget) {
  exercise_all(v);
  if (budget <= 0)
    return;
  auto keep = std::make_shared<value>(v);
  const auto& o = v.object();
  if (o.type == msgpack::type::ARRAY)
    for (std::uint32_t i = 0; i < o.via.array.size && i < 4; ++i)
      exercise(value{keep, o.via.array.ptr[i]}, budget - 1);
  if (o.type == msgpack::type::MAP)
    for (std::uint32_t i = 0; i < o.via.map.size && i < 4; ++i)
      exercise(value{keep, o.via.map.ptr[i].val}, budget - 1);
}

void exercise(const std::variant<protocol::message, std::string>& d, bool structure_ok) {
  if (auto err = std::get_if<std::string>(&d)) {
    // What passed the structure check, msgpack-cxx must decode: the two must agree.
    if (structure_ok)
      PYVISOR_FUZZ_CHECK(err->rfind("undecodable msgpack", 0) != 0);
    return;
  }
  const auto& m = std::get<protocol::message>(d);
  (void) protocol::map_string(m.payload, "code");
  auto r = protocol::parse_response(m);
  if (r.result)
    exercise(*r.result, 2);
  else
    PYVISOR_FUZZ_CHECK(r.result.error().code != errc::none);
  // The payload as a value, with and without the message's zone.
  exercise(value{m.owner(), m.payload, m.zone.get()}, 1);
  exercise(value{m.owner(), m.payload}, 0);
}

} // namespace

int fuzz_decode_value(const std::uint8_t* data, std::size_t size) {
  std::string_view body{reinterpret_cast<const char*>(data), size};
  core::limits lim;
  const bool structure_ok = !core::check_structure(body, lim);
  // Small frames: decode copies strings and binaries into the message's zone.
  exercise(protocol::decode(body, lim), structure_ok);
  // Large frames: the body lives in its own buffer and is referenced in place.
  std::shared_ptr<char[]> buf(new char[size == 0 ? 1 : size]);
  if (size > 0)
    std::memcpy(buf.get(), data, size);
  exercise(protocol::decode({buf.get(), size}, lim, buf), structure_ok);
  return 0;
}

} // namespace pyvisor::fuzz
