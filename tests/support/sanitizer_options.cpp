// Default sanitizer options of the test binaries (no environment needed): fail on the first
// UBSan finding, with a stack trace, except for one known report inside CAF 0.17 itself.
extern "C" {

const char* __ubsan_default_options() {
  return "halt_on_error=1:print_stacktrace=1:suppressions=" PYVISOR_UBSAN_SUPPRESSIONS;
}

const char* __asan_default_options() {
  // A small quarantine: the backpressure tests bound RSS growth, and ASan's default 256 MiB of
  // held-back freed memory would be counted as growth.
  return "detect_leaks=1:strict_init_order=1:quarantine_size_mb=16";
}

}

#if defined(PYVISOR_UBSAN_ACTIVE)
#include <memory>

namespace {

// UBSan reads its suppressions file at its first report, not at start-up: a test that runs out
// of fds (tests/reliability fd_exhaustion) would make that first report fail to open it and
// abort. One suppressed report at start-up (the same null reference binding through an empty
// shared_ptr that CAF 0.17 makes, matched by ubsan.supp's bits/shared_ptr_base.h line) loads
// the file while fds are plentiful.
[[maybe_unused]] const bool suppressions_loaded = [] {
  std::shared_ptr<int> none;
  static_cast<void>(*none);  // the report is inside operator*; nothing is bound or read here
  return true;
}();

} // namespace
#endif

