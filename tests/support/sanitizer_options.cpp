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
