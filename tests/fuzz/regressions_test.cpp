// Replays, under the normal (gcc) build, every input kept in tests/fuzz/regressions/<target>/
// and every golden frame (the fuzzers' seeds) through the same harness functions libFuzzer
// runs (tests/fuzz/run). A harness that crashes or breaks an invariant aborts the test.
#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "fuzz/harness.hpp"

namespace fs = std::filesystem;

namespace {

using harness_fn = int (*)(const std::uint8_t*, std::size_t);

std::string read_file(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

std::vector<fs::path> files_in(const fs::path& dir, const std::string& ext = {}) {
  std::vector<fs::path> out;
  if (!fs::is_directory(dir))
    return out;
  for (const auto& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && (ext.empty() || e.path().extension() == ext) &&
        e.path().filename() != "README.md")
      out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

int run(harness_fn f, const std::string& bytes) {
  return f(reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size());
}

const fs::path regressions = fs::path{PYVISOR_FUZZ_DIR} / "regressions";
const fs::path golden = fs::path{PYVISOR_TEST_DATA_DIR} / "golden";

} // namespace

TEST(regressions, frame_reader_crashers) {
  for (const auto& p : files_in(regressions / "frame_reader")) {
    SCOPED_TRACE(p.string());
    EXPECT_EQ(run(pyvisor::fuzz::fuzz_frame_reader, read_file(p)), 0);
  }
}

TEST(regressions, decode_value_crashers) {
  for (const auto& p : files_in(regressions / "decode_value")) {
    SCOPED_TRACE(p.string());
    EXPECT_EQ(run(pyvisor::fuzz::fuzz_decode_value, read_file(p)), 0);
  }
}

TEST(seeds, golden_frames_through_every_harness) {
  auto frames = files_in(golden, ".bin");
  ASSERT_FALSE(frames.empty()) << golden;
  std::string stream;
  for (const auto& p : frames) {
    SCOPED_TRACE(p.string());
    auto frame = read_file(p);
    ASSERT_GT(frame.size(), 4u);
    stream += frame;
    // The decoder's input is a frame body; the reader's is a stream with its selector bytes.
    EXPECT_EQ(run(pyvisor::fuzz::fuzz_decode_value, frame.substr(4)), 0);
    EXPECT_EQ(run(pyvisor::fuzz::fuzz_frame_reader, std::string("\x00\x00", 2) + frame), 0);
  }
  // All golden frames in one stream, under every reader configuration and a few chunkings.
  for (int cfg = 0; cfg < 128; ++cfg)
    for (const char* sizes : {"\x00", "\x01\x01", "\x03\x05\x01\x40"}) {
      std::string input{static_cast<char>(cfg)};
      input += sizes;
      EXPECT_EQ(run(pyvisor::fuzz::fuzz_frame_reader, input + stream), 0) << cfg;
    }
}
