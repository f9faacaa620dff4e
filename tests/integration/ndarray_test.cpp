// numpy arrays (ext 7, pyvisor/ndarray.hpp) against real interpreters: both directions through
// the pipe and through shared memory, strides and dtypes, and bad arrays failing only their
// request. Interpreters without numpy (a pyenv python3 here; Debian's has python3-numpy)
// skip what needs it and still check that an array fails its request cleanly.
#include <complex>
#include <numeric>
#include <optional>

#include "support/fixture.hpp"

using namespace pyvisor;
using namespace pyvisor::test;

namespace {

constexpr std::size_t mib = std::size_t{1} << 20;

class ndarray_test : public runtime_test {
protected:
  /// An interpreter with numpy imported as np; nullopt (and the test skips) without numpy.
  std::optional<interpreter> numpy_interpreter(interpreter_options o) {
    o.init_script = {"try:\n    import numpy as np\nexcept ImportError:\n    np = None"};
    auto py = must_spawn(o);
    auto has = py.eval("return np is not None");
    EXPECT_TRUE(has) << has.error();
    if (!has || !has->as<bool>())
      return std::nullopt;
    return py;
  }
};

#define NUMPY_OR_SKIP(py)                                                                        \
  if (!(py))                                                                                     \
  GTEST_SKIP() << test_python() << " cannot import numpy"

} // namespace

TEST_F(ndarray_test, arrays_go_both_ways_through_shared_memory_and_the_pipe) {
  for (std::size_t threshold : {mib, std::size_t{0}}) {
    SCOPED_TRACE(threshold);
    auto o = options();
    o.shared_memory_threshold = threshold;
    auto py = numpy_interpreter(o);
    NUMPY_OR_SKIP(py);
    std::vector<double> xs(3 * mib / 8);
    std::iota(xs.begin(), xs.end(), 0.25);
    ndarray_view<double> in(xs.data(), {xs.size() / 4, 4});
    // Host -> Python: a new, writable, C-contiguous array.
    auto seen = py->eval("return [a.dtype.str, list(a.shape), a.flags.writeable, a.flags.c_contiguous, "
                        "float(a[-1, -1]), float(a.sum())]",
                        {{"a", in}}, {.timeout = scaled(30s)});
    ASSERT_TRUE(seen) << seen.error();
    auto expected_sum = std::accumulate(xs.begin(), xs.end(), 0.0);
    EXPECT_EQ((seen->as<std::tuple<std::string, std::vector<std::size_t>, bool, bool, double, double>>()),
              std::make_tuple(std::string{"<f8"}, std::vector<std::size_t>{xs.size() / 4, 4}, true, true,
                              xs.back(), expected_sum));
    // Round trip, and an array Python made.
    auto back = py->eval("return a", {{"a", in}}, {.timeout = scaled(30s)});
    ASSERT_TRUE(back) << back.error();
    auto out = ndarray_view<double>::from(*back);
    ASSERT_TRUE(out) << out.error();
    EXPECT_EQ(out->shape(), in.shape());
    ASSERT_TRUE(out->contiguous());
    EXPECT_TRUE(std::equal(xs.begin(), xs.end(), out->span().begin()));
    if (threshold != 0) {  // in the pages the runner wrote, 64-byte aligned
      EXPECT_EQ(reinterpret_cast<std::uintptr_t>(out->data()) % 64, 0u);
    }
    auto made = py->eval("return np.arange(n, dtype=np.float64).reshape(-1, 8) * 0.5",
                        {{"n", 2 * mib / 8}}, {.timeout = scaled(30s)});
    ASSERT_TRUE(made) << made.error();
    auto m = ndarray_view<double>::from(*made);
    ASSERT_TRUE(m) << m.error();
    EXPECT_EQ(m->shape(), (std::vector<std::size_t>{2 * mib / 64, 8}));
    EXPECT_EQ((*m)(100, 3), (100 * 8 + 3) * 0.5);
    // Moved in (ndarray_view::take): no copy until the request is written, the same array.
    auto owned = ndarray_view<double>::take(std::vector<double>(xs), {xs.size()});
    ASSERT_TRUE(owned) << owned.error();
    auto sum = py->eval("return float(a.sum())", {{"a", *owned}}, {.timeout = scaled(30s)});
    ASSERT_TRUE(sum) << sum.error();
    EXPECT_EQ(sum->as<double>(), expected_sum);
    auto s = py->stats();
    EXPECT_EQ(s.shared_memory_in, threshold == 0 ? 0u : 2u);
    EXPECT_EQ(s.shared_memory_out, threshold == 0 ? 0u : 3u);
  }
}

TEST_F(ndarray_test, strides_dtypes_and_small_arrays) {
  auto py = numpy_interpreter(options());
  NUMPY_OR_SKIP(py);
  // Fortran order from Python: sent as it is in memory, read by index.
  auto f = py->eval("return np.asfortranarray(np.arange(6, dtype=np.int64).reshape(2, 3))");
  ASSERT_TRUE(f) << f.error();
  auto fv = ndarray_view<std::int64_t>::from(*f);
  ASSERT_TRUE(fv) << fv.error();
  EXPECT_EQ(fv->strides(), (std::vector<std::size_t>{8, 16}));
  EXPECT_FALSE(fv->contiguous());
  EXPECT_EQ((*fv)(1, 2), 5);
  EXPECT_EQ((*fv)(0, 1), 1);
  // Not contiguous at all: a C-ordered copy.
  auto sliced = ndarray_view<std::int16_t>::from(*py->eval("return np.arange(40, dtype=np.int16)[::3]"));
  ASSERT_TRUE(sliced) << sliced.error();
  EXPECT_TRUE(sliced->contiguous());
  EXPECT_EQ(sliced->size(), 14u);
  EXPECT_EQ((*sliced)(13), 39);
  // A strided view from C++ (column-major 2 x 3) means the same items in Python.
  std::vector<std::int32_t> col_major{1, 4, 2, 5, 3, 6};
  auto rows = py->eval("return a.tolist()", {{"a", ndarray_view<std::int32_t>(col_major.data(), {2, 3}, {4, 8})}});
  ASSERT_TRUE(rows) << rows.error();
  EXPECT_EQ(rows->as<std::vector<std::vector<int>>>(), (std::vector<std::vector<int>>{{1, 2, 3}, {4, 5, 6}}));
  // Other dtypes, both ways.
  std::vector<std::complex<double>> zs{{1, 2}, {-3, 0.5}};
  auto z = py->eval("return a * 1j", {{"a", ndarray_view<std::complex<double>>(zs.data(), {2})}});
  auto zv = ndarray_view<std::complex<double>>::from(*z);
  ASSERT_TRUE(zv) << zv.error();
  EXPECT_EQ((*zv)(0), std::complex<double>(-2, 1));
  bool flags[3] = {true, false, true};
  auto b = py->eval("return ~a", {{"a", ndarray_view<bool>(flags, {3})}});
  auto bv = ndarray_view<bool>::from(*b);
  ASSERT_TRUE(bv) << bv.error();
  EXPECT_EQ(std::vector<bool>(bv->span().begin(), bv->span().end()), (std::vector<bool>{false, true, false}));
  std::uint8_t none = 0;
  auto u = py->eval("return np.array([1, 2, 250], dtype=np.uint8) + a", {{"a", ndarray_view<std::uint8_t>(&none, {0})}});
  ASSERT_FALSE(u);  // shapes (3,) and (0,) do not broadcast: Python's error, as usual
  EXPECT_EQ(u.error().code, errc::python_exception);
  auto e = ndarray_view<float>::from(*py->eval("return np.zeros((0, 4), dtype=np.float32)"));
  ASSERT_TRUE(e) << e.error();
  EXPECT_EQ(e->size(), 0u);
  EXPECT_EQ(e->shape(), (std::vector<std::size_t>{0, 4}));
  // Big-endian arrays keep their dtype: reading them as double is a mismatch that says so.
  auto be = py->eval("return np.arange(3, dtype='>f8')");
  ASSERT_TRUE(be) << be.error();
  auto bev = ndarray_view<double>::from(*be);
  ASSERT_FALSE(bev);
  EXPECT_NE(bev.error().message.find(">f8, not <f8"), std::string::npos) << bev.error().message;
}

TEST_F(ndarray_test, bad_arrays_fail_their_request_and_the_interpreter_stays) {
  auto py = numpy_interpreter(options());
  NUMPY_OR_SKIP(py);
  auto str = py->eval("return {'x': np.array(['a', 'b'])}");
  ASSERT_FALSE(str);
  EXPECT_EQ(str.error().code, errc::unserializable);
  EXPECT_NE(str.error().message.find("dtype <U1"), std::string::npos) << str.error().message;
  EXPECT_NE(str.error().message.find("result[\"x\"]"), std::string::npos) << str.error().message;
  // A view the runner refuses (a dimension above numpy's intp): the request fails, the
  // interpreter goes on. (A malformed ext 7 by hand is refused by arg::from_msgpack already.)
  double one = 1;
  auto bad = py->eval("return x", {{"x", ndarray_view<double>(&one, {0, std::size_t{1} << 63})}});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, errc::invalid_argument);
  EXPECT_NE(bad.error().message.find("malformed ndarray"), std::string::npos) << bad.error().message;
  EXPECT_EQ(py->eval("return 6 * 7")->as<int>(), 42);
}

TEST_F(ndarray_test, without_numpy_an_array_fails_its_request_only) {
  // Runs on every interpreter: numpy made unimportable in this one.
  auto o = options();
  o.init_script = {"import sys\nsys.modules['numpy'] = None"};
  auto one = must_spawn(o);
  auto* py = &one;
  double xs[2] = {1, 2};
  auto r = py->eval("return x", {{"x", ndarray_view<double>(xs, {2})}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, errc::invalid_argument);
  EXPECT_NE(r.error().message.find("needs numpy"), std::string::npos) << r.error().message;
  EXPECT_EQ(py->eval("return 6 * 7")->as<int>(), 42);
}
