// libFuzzer's entry point for one harness; tests/fuzz/run compiles this file once per target
// with PYVISOR_FUZZ_HARNESS set to the harness function (e.g. fuzz_frame_reader).
#include "fuzz/harness.hpp"

#ifndef PYVISOR_FUZZ_HARNESS
#error "define PYVISOR_FUZZ_HARNESS to the harness function"
#endif

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  return pyvisor::fuzz::PYVISOR_FUZZ_HARNESS(data, size);
}
