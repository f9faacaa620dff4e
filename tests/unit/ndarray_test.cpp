// numpy arrays (ext 7) on the host without a process: packing a view, reading one back typed,
// the payload's checks, and the shared-memory path (ext 8 slots, placement, resolution).
#include "pyvisor/ndarray.hpp"

#include "io/shared_area.hpp"
#include "process/spawn.hpp"
#include "protocol/message.hpp"
#include "unit/shared_reply.hpp"
#include "pyvisor/vars.hpp"

#include <complex>
#include <cstring>
#include <numeric>
#include <sys/mman.h>
#include <unistd.h>

#include <gtest/gtest.h>

using namespace pyvisor;

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

/// The payload of the ext 7 that `enc` (one packed value) is.
std::string payload_of(const std::string& enc) {
  std::size_t head = static_cast<unsigned char>(enc[0]) == 0xc7 ? 3
                     : static_cast<unsigned char>(enc[0]) == 0xc8 ? 4
                                                                  : 6;
  EXPECT_EQ(enc[head - 1], 7);
  return enc.substr(head);
}

/// A value whose ext 7 sits at byte `shift` of its own buffer (type byte there).
value at_shift(const std::string& payload, std::size_t shift) {
  auto buf = std::make_shared<std::string>(shift + 1 + payload.size(), '\0');
  (*buf)[shift] = 7;
  std::memcpy(buf->data() + shift + 1, payload.data(), payload.size());
  msgpack::object o;
  o.type = msgpack::type::EXT;
  o.via.ext.ptr = buf->data() + shift;
  o.via.ext.size = static_cast<std::uint32_t>(payload.size());
  return value{buf, o};
}

std::string raw_payload(const std::string& header_msgpack, std::size_t data_bytes, char pad = 0) {
  std::size_t start = (header_msgpack.size() + 1 + 63) / 64 * 64 - 1;
  std::string p = header_msgpack;
  p.resize(start, pad);
  p.append(data_bytes, '\x01');
  return p;
}

std::string header(const std::string& dtype, std::vector<std::uint64_t> shape,
                   std::vector<std::uint64_t> strides) {
  std::string out;
  detail::msgpack_writer w{&out};
  msgpack::packer<detail::msgpack_writer> pk{w};
  pk.pack_array(3);
  pk.pack(dtype);
  pk.pack(shape);
  pk.pack(strides);
  return out;
}

} // namespace

TEST(ndarray, dtype_strings_are_numpys) {
  EXPECT_EQ(dtype_of<double>(), "<f8");
  EXPECT_EQ(dtype_of<float>(), "<f4");
  EXPECT_EQ(dtype_of<bool>(), "|b1");
  EXPECT_EQ(dtype_of<std::uint8_t>(), "|u1");
  EXPECT_EQ(dtype_of<std::int8_t>(), "|i1");
  EXPECT_EQ(dtype_of<std::int16_t>(), "<i2");
  EXPECT_EQ(dtype_of<std::uint32_t>(), "<u4");
  EXPECT_EQ(dtype_of<std::int64_t>(), "<i8");
  EXPECT_EQ(dtype_of<long long>(), "<i8");
  EXPECT_EQ(dtype_of<std::complex<float>>(), "<c8");
  EXPECT_EQ(dtype_of<std::complex<double>>(), "<c16");
}

TEST(ndarray, a_view_packs_as_an_ext7_and_reads_back_typed_and_aligned) {
  std::vector<double> xs(12);
  std::iota(xs.begin(), xs.end(), 0.5);
  arg a{ndarray_view<double>(xs.data(), {3, 4})};
  auto payload = payload_of(a.bytes());
  auto v = value_from_msgpack(a.bytes());
  ASSERT_TRUE(v) << v.error();
  EXPECT_STREQ(v->type_name(), "ndarray");
  auto h = ndarray_header_of(*v);
  ASSERT_TRUE(h) << h.error();
  EXPECT_EQ(h->dtype, "<f8");
  EXPECT_EQ(h->shape, (std::vector<std::size_t>{3, 4}));
  EXPECT_EQ(h->strides, (std::vector<std::size_t>{32, 8}));
  // The data starts 64 bytes (a multiple) after the type byte.
  EXPECT_EQ((payload.size() - 12 * 8 + 1) % 64, 0u);
  for (std::size_t shift = 0; shift < 16; ++shift) {
    auto w = at_shift(payload, shift);
    auto view = ndarray_view<double>::from(w);
    ASSERT_TRUE(view) << view.error();
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(view->data()) % alignof(double), 0u) << shift;
    EXPECT_TRUE(view->contiguous());
    EXPECT_EQ(view->size(), 12u);
    EXPECT_EQ(view->ndim(), 2u);
    ASSERT_EQ(view->span().size(), 12u);
    EXPECT_TRUE(std::equal(xs.begin(), xs.end(), view->span().begin()));
    EXPECT_EQ((*view)(2, 3), 11.5);
    EXPECT_EQ((*view)(1, 0), 4.5);
  }
  // In place when aligned: the view reads the value's own bytes.
  auto aligned = at_shift(payload, 0);
  auto in_place = ndarray_view<double>::from(aligned);
  EXPECT_EQ(reinterpret_cast<const char*>(in_place->data()),
            aligned.object().via.ext.data() + payload.size() - 96);
  // A copy of the view outlives the value it came from (it keeps it).
  ndarray_view<double> kept;
  {
    auto tmp = at_shift(payload, 3);
    kept = *ndarray_view<double>::from(tmp);
  }
  EXPECT_EQ(kept(2, 2), 10.5);
}

TEST(ndarray, a_view_that_keeps_its_memory_is_sent_without_a_copy) {
  std::vector<double> same(1000);
  std::iota(same.begin(), same.end(), 1.0);
  auto items = same;
  const double* where = items.data();
  auto owned = ndarray_view<double>::take(std::move(items), {10, 100});
  ASSERT_TRUE(owned) << owned.error();
  EXPECT_EQ(owned->data(), where);
  arg a{*owned};
  ASSERT_TRUE(a.external());
  EXPECT_EQ(a.external()->data, reinterpret_cast<const char*>(where));
  // The same encoding as a copied view.
  EXPECT_EQ(a.bytes(), arg{ndarray_view<double>(same.data(), {10, 100})}.bytes());
  EXPECT_FALSE(arg{ndarray_view<double>(same.data(), {10, 100})}.external());
  // A view of a value Python sent goes back as it is.
  auto received = ndarray_view<double>::from(at_shift(payload_of(a.bytes()), 0));
  ASSERT_TRUE(received) << received.error();
  arg back{*received};
  ASSERT_TRUE(back.external());
  EXPECT_EQ(back.external()->data, reinterpret_cast<const char*>(received->data()));
  EXPECT_EQ(back.bytes(), a.bytes());
  // As a slot (the shared-memory path): the prefix (header, padding) then the caller's items,
  // the same payload as the copy's.
  protocol::request_extras x;
  x.slots_from = 1024;
  vars held{{"a", a}};
  auto out = protocol::encode_code_request_out(1, "eval", "return a", held, "<f>", 1, x);
  ASSERT_EQ(out.slots.size(), 1u);
  EXPECT_TRUE(out.slots[0].ndarray);
  EXPECT_EQ(out.slots[0].data, reinterpret_cast<const char*>(where));
  EXPECT_EQ(out.slots[0].prefix + std::string(out.slots[0].data, out.slots[0].size), payload_of(a.bytes()));
  vars copied{{"a", ndarray_view<double>(same.data(), {10, 100})}};
  x.slots_from = 0;
  EXPECT_EQ(std::move(out).inline_frame(),
            protocol::encode_code_request(1, "eval", "return a", copied, "<f>", 1, x));
  // take() checks the shape.
  auto wrong = ndarray_view<double>::take(std::vector<double>(5), {2, 3});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, errc::invalid_argument);
}

TEST(ndarray, strided_and_empty_views) {
  // 2 x 3 in Fortran order: item (i, j) at i * 8 + j * 16.
  std::vector<std::int64_t> col_major{1, 4, 2, 5, 3, 6};
  ndarray_view<std::int64_t> f(col_major.data(), {2, 3}, {8, 16});
  EXPECT_FALSE(f.contiguous());
  EXPECT_TRUE(f.span().empty());
  auto v = value_from_msgpack(arg{f}.bytes());
  ASSERT_TRUE(v);
  auto back = ndarray_view<std::int64_t>::from(*v);
  ASSERT_TRUE(back) << back.error();
  EXPECT_EQ(back->strides(), (std::vector<std::size_t>{8, 16}));
  for (int i = 0; i < 2; ++i)
    for (int j = 0; j < 3; ++j)
      EXPECT_EQ((*back)(i, j), i * 3 + j + 1);
  // Empty: no data, canonical zero strides.
  ndarray_view<float> empty(nullptr, {0, 5});
  auto e = value_from_msgpack(arg{empty}.bytes());
  ASSERT_TRUE(e);
  auto eb = ndarray_view<float>::from(*e);
  ASSERT_TRUE(eb) << eb.error();
  EXPECT_EQ(eb->size(), 0u);
  EXPECT_EQ(eb->strides(), (std::vector<std::size_t>{0, 0}));
  // 0-d: one item.
  bool yes = true;
  auto s = value_from_msgpack(arg{ndarray_view<bool>(&yes, {})}.bytes());
  auto sb = ndarray_view<bool>::from(*s);
  ASSERT_TRUE(sb) << sb.error();
  EXPECT_TRUE((*sb)());
  EXPECT_EQ(sb->size(), 1u);
}

TEST(ndarray, misaligned_strides_odd_bools_and_default_views) {
  // Items at a stride that is not a multiple of their alignment would be misaligned reads.
  auto odd = raw_payload(header("<f8", {2}, {9}), 17);
  auto r = ndarray_view<double>::from(at_shift(odd, 0));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("stride of 9"), std::string::npos) << r.error().message;
  EXPECT_TRUE(ndarray_view<std::uint8_t>::from(at_shift(raw_payload(header("|u1", {2}, {9}), 10), 0)));
  // A bool is 0 or 1.
  auto two = raw_payload(header("|b1", {1}, {1}), 0);
  two.push_back('\x02');
  auto b = ndarray_view<bool>::from(at_shift(two, 0));
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("neither 0 nor 1"), std::string::npos);
  // A default view is empty, and packs as one (a review found it packed 8 bytes from nullptr).
  ndarray_view<double> none;
  EXPECT_EQ(none.size(), 0u);
  EXPECT_EQ(none.shape(), (std::vector<std::size_t>{0}));
  auto packed = value_from_msgpack(arg{std::vector<ndarray_view<double>>(3)}.bytes());
  ASSERT_TRUE(packed) << packed.error();
  // A view without data that would need some cannot be packed.
  EXPECT_THROW(arg(ndarray_view<double>(nullptr, {2})), msgpack::type_error);
}

TEST(ndarray, other_dtypes_and_other_values_are_type_mismatches) {
  std::vector<std::int32_t> xs{1, 2, 3};
  auto v = value_from_msgpack(arg{ndarray_view<std::int32_t>(xs.data(), {3})}.bytes());
  auto wrong = ndarray_view<double>::from(*v);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, errc::type_mismatch);
  EXPECT_NE(wrong.error().message.find("<i4, not <f8"), std::string::npos) << wrong.error().message;
  EXPECT_FALSE(ndarray_view<std::uint32_t>::from(*v));
  auto number = value_from_msgpack(std::string("\x05", 1));
  auto not_array = ndarray_view<double>::from(*number);
  ASSERT_FALSE(not_array);
  EXPECT_NE(not_array.error().message.find("not an ndarray: a int"), std::string::npos);
  EXPECT_FALSE(ndarray_header_of(*number));
}

TEST(ndarray, malformed_payloads_are_refused_with_the_reason) {
  struct bad_case {
    const char* what;
    std::string payload;
  };
  std::vector<bad_case> cases{
    {"dtype", raw_payload(header("<U1", {1}, {4}), 4)},
    {"dtype", raw_payload(header("|O", {1}, {8}), 8)},
    {"dtype", raw_payload(header("f8", {1}, {8}), 8)},
    {"dtype", raw_payload(header("<f16", {1}, {16}), 16)},
    {"dtype", raw_payload(header("|f8", {1}, {8}), 8)},
    {"dtype", raw_payload(header("<b1", {1}, {1}), 1)},
    {"bytes of data", raw_payload(header("<f8", {2}, {8}), 15)},
    {"bytes of data", raw_payload(header("<f8", {2}, {8}), 17)},
    {"overlapping", raw_payload(header("<f8", {std::uint64_t{1} << 40}, {0}), 8)},
    {"overlapping", raw_payload(header("<f8", {1000, 1000}, {8, 8}), 8 + 999 * 16)},
    {"bytes of data", raw_payload(header("<f8", {std::uint64_t{1} << 62, 4}, {8, 8}), 8)},
    {"padding", raw_payload(header("<f8", {1}, {8}), 8, '\x01')},
    {"shape and strides", raw_payload(header("<f8", std::vector<std::uint64_t>(33, 1),
                                             std::vector<std::uint64_t>(33, 8)), 8)},
    {"shape and strides", raw_payload(header("<f8", {1, 1}, {8}), 8)},
    {"shape and strides", raw_payload(header("<f8", {0, std::uint64_t{1} << 63}, {0, 0}), 0)},
    {"header", std::string("\x92\xa3<f8\x90", 6)},
    {"header", std::string{}},
  };
  for (const auto& c : cases) {
    auto v = at_shift(c.payload, 0);
    auto r = ndarray_view<double>::from(v);
    ASSERT_FALSE(r) << c.what;
    EXPECT_EQ(r.error().code, errc::type_mismatch);
    EXPECT_NE(r.error().message.find("malformed ndarray"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(c.what), std::string::npos) << c.what << ": " << r.error().message;
    EXPECT_FALSE(ndarray_header_of(v));
  }
  // Only the exact shape the runner reads too: no array 32, int 64 or str 16 in the header.
  std::string a32 = "\x93\xa3<f8\xdd" + std::string("\x00\x00\x00\x01", 4) + "\x01\x91\x08";
  EXPECT_FALSE(ndarray_view<double>::from(at_shift(raw_payload(a32, 8), 0)));
  std::string i64 = "\x93\xa3<f8\x91\xd3" + std::string(7, '\0') + "\x01\x91\x08";
  EXPECT_FALSE(ndarray_view<double>::from(at_shift(raw_payload(i64, 8), 0)));
  std::string s16 = std::string("\x93\xda\x00\x03<f8\x91\x01\x91\x08", 11);
  EXPECT_FALSE(ndarray_view<double>::from(at_shift(raw_payload(s16, 8), 0)));
  std::string fine = "\x93\xa3<f8\x91\xcf" + std::string(7, '\0') + "\x01\x91\x08";  // uint 64 1
  EXPECT_TRUE(ndarray_view<double>::from(at_shift(raw_payload(fine, 8), 0)));
  // A negative dimension is not a non-negative int.
  std::string neg;
  {
    detail::msgpack_writer w{&neg};
    msgpack::packer<detail::msgpack_writer> pk{w};
    pk.pack_array(3);
    pk.pack(std::string{"<f8"});
    pk.pack(std::vector<int>{-1});
    pk.pack(std::vector<int>{8});
  }
  EXPECT_FALSE(ndarray_view<double>::from(at_shift(raw_payload(neg, 0), 0)));
}

TEST(shared_frames, a_large_ndarray_becomes_an_ext8_slot_placed_after_its_type_byte) {
  constexpr std::size_t area_bytes = 8 * mib;
  std::vector<double> xs(3 * mib / 8);
  std::iota(xs.begin(), xs.end(), 0.0);
  vars v{{"a", ndarray_view<double>(xs.data(), {xs.size() / 4, 4})}};
  protocol::request_extras x;
  auto plain = protocol::encode_code_request(9, "eval", "return a", v, "<f>", 1, x);
  x.slots_from = mib;
  auto out = protocol::encode_code_request_out(9, "eval", "return a", v, "<f>", 1, x);
  ASSERT_EQ(out.slots.size(), 1u);
  EXPECT_TRUE(out.slots[0].ndarray);
  EXPECT_EQ(out.bytes.substr(out.slots[0].at, 2), std::string("\xd8\x08", 2));
  auto copy = out;
  EXPECT_EQ(std::move(copy).inline_frame(), plain);

  int fd = process::make_shared_memory(area_bytes);
  ASSERT_GE(fd, 0);
  int view_fd = ::dup(fd);
  auto area = io::shared_area::map(fd, area_bytes, 4 * mib);
  ASSERT_TRUE(area) << area.error();
  auto* view = static_cast<char*>(::mmap(nullptr, 2 * area_bytes, PROT_READ, MAP_SHARED, view_fd, 0));
  ::close(view_fd);
  ASSERT_NE(view, MAP_FAILED);
  ASSERT_TRUE((*area)->place(9, out));
  auto d = protocol::decode(std::string_view{out.bytes}.substr(4), protocol::limits{});
  auto& m = std::get<protocol::message>(d);
  auto ref = protocol::map_get(*protocol::map_get(m.payload, "vars"), "a");
  ASSERT_NE(ref, nullptr);
  ASSERT_EQ(ref->via.ext.type(), protocol::ext_shared_ndarray);
  std::uint64_t off = 0, len = 0;
  ASSERT_TRUE(protocol::get_shared_ref(*ref, off, len));
  EXPECT_EQ(off % 4096, 1u);
  EXPECT_EQ(view[off - 1], 7);
  auto payload = payload_of(arg{ndarray_view<double>(xs.data(), {xs.size() / 4, 4})}.bytes());
  ASSERT_EQ(len, payload.size());
  EXPECT_EQ(std::memcmp(view + off, payload.data(), len), 0);
  (*area)->release(9);
  ::munmap(view, 2 * area_bytes);
  // Made by a user, an ext 8 is refused like an ext 6.
  std::string forged("\xd8\x08", 2);
  forged.append(16, '\0');
  auto r = arg::from_msgpack(forged);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("ext type 8"), std::string::npos) << r.error().message;
  EXPECT_FALSE(value_from_msgpack(std::string("\xc7\x13\x01\x91", 4) + forged));
  // A malformed ext 7 is refused where it is made, and so is a reference hidden in its header.
  std::string bad_array("\xc7\x09\x07\x93\xa3<f8\x91\x01\x91\x08", 12);
  auto refused = arg::from_msgpack(bad_array);
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message.find("malformed ndarray"), std::string::npos)
    << refused.error().message;
  std::string hidden = std::string("\x93", 1) + forged + std::string("\x90\x90", 2);
  hidden.resize(63, '\0');
  EXPECT_FALSE(arg::from_msgpack(std::string("\xc7\x3f\x07", 3) + hidden));
  EXPECT_TRUE(arg::from_msgpack(arg{ndarray_view<double>(xs.data(), {4})}.bytes()));
}

TEST(shared_area, an_ext8_reply_is_read_in_place_or_copied_aligned) {
  constexpr std::size_t area_bytes = 4 * mib;
  int fd = process::make_shared_memory(area_bytes);
  ASSERT_GE(fd, 0);
  int view_fd = ::dup(fd);
  auto area = io::shared_area::map(fd, area_bytes, 4 * mib);
  ASSERT_TRUE(area) << area.error();
  auto* view = static_cast<char*>(
    ::mmap(nullptr, 2 * area_bytes, PROT_READ | PROT_WRITE, MAP_SHARED, view_fd, 0));
  ::close(view_fd);
  ASSERT_NE(view, MAP_FAILED);
  // What the runner writes at the start of a page of its half: 7, then the payload.
  std::vector<double> xs(1000);
  std::iota(xs.begin(), xs.end(), 1.0);
  auto payload = payload_of(arg{ndarray_view<double>(xs.data(), {10, 100})}.bytes());
  char* runner_half = view + area_bytes;
  runner_half[8192] = 7;
  std::memcpy(runner_half + 8193, payload.data(), payload.size());

  auto resolve = [&](std::uint64_t at, std::uint64_t n, bool copy, protocol::message& r) {
    auto fr = test::shared_reply_frame(at, n, protocol::ext_shared_ndarray);
    auto d = protocol::decode(std::string_view{fr}.substr(4), protocol::limits{});
    r = std::get<protocol::message>(std::move(d));
    auto ok = const_cast<msgpack::object*>(protocol::map_get(r.payload, "ok"));
    return (*area)->resolve(r, *ok, fr.size() - 4, 64 * mib, copy);
  };
  for (bool copy : {false, true}) {
    protocol::message r;
    ASSERT_FALSE(resolve(8193, payload.size(), copy, r));
    {
      auto rep = protocol::parse_response(r);
      ASSERT_TRUE(rep.result);
      auto a = ndarray_view<double>::from(*rep.result);
      ASSERT_TRUE(a) << a.error();
      const char* p = reinterpret_cast<const char*>(a->data());
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(p) % 64, 0u);
      EXPECT_EQ((*a)(9, 99), 1000.0);
      // In place: what the process writes into the data shows (past the first page); copied:
      // it does not.
      double* last = reinterpret_cast<double*>(runner_half + 8193 + payload.size() - 8);
      EXPECT_EQ(*last, 1000.0);
      *last = -1.0;
      EXPECT_EQ((*a)(9, 99), copy ? 1000.0 : -1.0) << (copy ? "copied" : "in place");
      *last = 1000.0;
      // The type byte and the header are the host's own either way: the process changing them
      // changes nothing (a review made a held array turn into a tuple this way).
      runner_half[8192] = 1;
      runner_half[8193 + 3] = 'i';  // "<f8" -> "<i8"
      EXPECT_STREQ(rep.result->type_name(), "ndarray");
      auto again = ndarray_view<double>::from(*rep.result);
      ASSERT_TRUE(again) << again.error();
      EXPECT_EQ((*again)(0, 0), 1.0);
      runner_half[8192] = 7;
      runner_half[8193 + 3] = 'f';
      r = {};
    }
    EXPECT_EQ((*area)->take_frees(), std::vector<std::uint64_t>{8192});  // the range's start
  }
  // A runner sending a range the host still holds again (a review: the first value's end
  // would drop the host's copy of the page the second one reads its header from) is refused,
  // also as bytes over it; once the value is gone, the range may come again.
  {
    protocol::message first, second;
    ASSERT_FALSE(resolve(8193, payload.size(), false, first));
    auto dup = resolve(8193, payload.size(), false, second);
    ASSERT_TRUE(dup);
    EXPECT_NE(dup->find("still holds"), std::string::npos) << *dup;
    EXPECT_TRUE(resolve(8192 + 100, 10, false, second));  // ext 6 inside it
    first = {};
    EXPECT_FALSE(resolve(8193, payload.size(), false, second));
    second = {};
    (*area)->take_frees();
  }
  // Not after a type byte 7 at the start of a page: refused.
  protocol::message r;
  EXPECT_TRUE(resolve(8192, payload.size(), false, r));
  EXPECT_TRUE(resolve(8194, payload.size() - 1, false, r));
  runner_half[8192] = 6;
  EXPECT_TRUE(resolve(8193, payload.size(), false, r));
  EXPECT_TRUE(resolve(0, 4 * mib + 1, false, r));
  ::munmap(view, 2 * area_bytes);
}
