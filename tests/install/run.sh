#!/usr/bin/env bash
# Usage: run.sh BUILD_DIR [--asan]
#
# Installs BUILD_DIR into a fresh prefix, builds tests/install as an outside project against it
# with find_package(pyvisor) and installs that consumer into the same prefix; then MOVES the
# prefix elsewhere and runs the consumer from there, from a cwd outside the source tree and
# without PYVISOR_RUNNER_DIR: it must run the moved prefix's runner, not the source tree's.
#
# --asan: the same with a sanitizer build of the library (address,undefined): BUILD_DIR itself
# when it was configured with PYVISOR_SANITIZERS, else a small library-only build kept in
# BUILD_DIR/install-asan (3-5 min on 2 cores the first time, incremental afterwards). The
# consumer is an ordinary build: it gets -fsanitize only from pyvisor::pyvisor.
set -euo pipefail
build=$(cd "$1" && pwd)
mode=${2:-}
src=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$src/../.." && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
quiet() { local log=$1; shift; "$@" > "$log" 2>&1 || { cat "$log" >&2; fail "$*"; }; }

lib_build=$build
if [[ $mode == --asan ]]; then
  sanitizers=$(sed -n 's/^PYVISOR_SANITIZERS:STRING=//p' "$build/CMakeCache.txt")
  if [[ -z $sanitizers ]]; then
    lib_build=$build/install-asan
    echo "building the sanitizer library in $lib_build"
    quiet "$work/asan-configure.log" cmake -S "$root" -B "$lib_build" -DCMAKE_BUILD_TYPE=Debug \
      -DPYVISOR_SANITIZERS=address,undefined -DPYVISOR_ENABLE_TESTS=OFF \
      -DPYVISOR_ENABLE_BENCH=OFF -DPYVISOR_ENABLE_EXAMPLES=OFF -DPYVISOR_ENABLE_CLI=OFF
    quiet "$work/asan-build.log" cmake --build "$lib_build" -j2 --target pyvisor
  fi
elif [[ -n $mode ]]; then
  fail "unknown option $mode"
fi

prefix=$work/prefix
quiet "$work/install.log" cmake --install "$lib_build" --prefix "$prefix"
quiet "$work/configure.log" cmake -S "$src" -B "$work/build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_INSTALL_PREFIX="$prefix" -DCMAKE_BUILD_TYPE=Release
quiet "$work/build.log" cmake --build "$work/build"
quiet "$work/install-consumer.log" cmake --install "$work/build"
test -f "$prefix/share/pyvisor/python/pyvisor/_runner.py" || fail "runner not installed"
test -x "$prefix/bin/consumer" || fail "consumer not installed"
if [[ $mode == --asan ]]; then
  grep -q -- '-fsanitize=address,undefined' "$prefix"/lib*/cmake/pyvisor/pyvisorTargets.cmake \
    || fail "the installed target does not carry -fsanitize"
  ldd "$prefix/bin/consumer" > "$work/ldd.txt"  # (no pipe into grep -q: pipefail + SIGPIPE)
  grep -q libasan "$work/ldd.txt" || fail "the consumer is not linked with ASan"
  # LeakSanitizer would flag CAF's process-lifetime singletons; the suite checks leaks itself.
  # The UBSan report inside CAF 0.17 is the known one the suite suppresses too.
  export ASAN_OPTIONS=detect_leaks=0
  export UBSAN_OPTIONS=print_stacktrace=1:suppressions=$root/tests/support/ubsan.supp
fi

# Move the prefix: the recorded install location is gone, only the relative one can work.
moved=$work/moved-elsewhere/prefix
mkdir -p "$(dirname "$moved")"
mv "$prefix" "$moved"
out=$(cd "$work" && env -u PYVISOR_RUNNER_DIR "$moved/bin/consumer") || fail "consumer failed: $out"
echo "$out"
runner=$(sed -n 's/^runner: //p' <<< "$out")
[[ $runner == "$moved/share/pyvisor/python/pyvisor/"* ]] \
  || fail "the consumer ran the runner at '$runner', not the moved prefix's ($moved)"
echo "consumer ok${mode:+ ($mode)}"
