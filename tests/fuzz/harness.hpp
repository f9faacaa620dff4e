#pragma once

// The fuzz harnesses (issue 7): plain functions, so the same code runs under libFuzzer
// (tests/fuzz/run, clang) and in the `fuzz_regressions` GoogleTest (gcc, the normal build),
// which replays every kept crasher and every golden seed.

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace pyvisor::fuzz {

/// The frame reader fed the input in arbitrary chunkings; checked against a reference split.
/// Input: byte 0 picks the reader's configuration and API, byte 1 the number (low 4 bits) of
/// chunk-size bytes that follow; the rest is the byte stream.
int fuzz_frame_reader(const std::uint8_t* data, std::size_t size);

/// protocol::decode + parse_response of one frame body, then every value conversion.
int fuzz_decode_value(const std::uint8_t* data, std::size_t size);

/// A broken invariant: report and abort, so libFuzzer keeps the input and gtest fails.
[[noreturn]] inline void invariant_failed(const char* what, const char* file, int line) {
  std::fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", what, file, line);
  std::abort();
}

} // namespace pyvisor::fuzz

#define PYVISOR_FUZZ_CHECK(cond) \
  ((cond) ? (void) 0 : ::pyvisor::fuzz::invariant_failed(#cond, __FILE__, __LINE__))
