#!/usr/bin/env bash
# Installs every system package pyvisor needs to build, test and benchmark, idempotently:
# packages already present are skipped, and `apt-get update` runs only when one is missing.
set -euo pipefail

packages=(
  g++ cmake make pkg-config
  libcaf-dev                       # CAF 0.17.6 core/io/openssl (no CMake package: cmake/FindCAF.cmake)
  libboost1.74-dev libboost-filesystem1.74-dev libboost-system1.74-dev   # Boost.Process v1
  libmsgpack-cxx-dev               # msgpack-cxx 4.1.3 (never the C library's -dev package: its CMake config clashes)
  libuv1-dev                       # libuv 1.44
  libtomlplusplus-dev              # toml++ 3.3 (config files)
  nlohmann-json3-dev               # nlohmann/json 3.11 (CLI and daemon JSON)
  libcli11-dev                     # CLI11 2.1 (the pyvisor command line)
  libcpp-httplib-dev libssl-dev    # cpp-httplib 0.11 + OpenSSL (the daemon's HTTP gateway, optional TLS)
  chromium                         # headless Chromium: the status page's browser test
  bubblewrap                       # bwrap: per-tenant sandbox (sandbox = "bwrap")
  libseccomp-dev                   # libseccomp 2.5: per-tenant syscall filter
  python3-venv python3-pip python3-setuptools python3-wheel   # `pyvisor env sync` venvs and the tests' local wheel
  googletest libgtest-dev libgmock-dev   # GoogleTest 1.12
  libbenchmark-dev                 # Google Benchmark 1.7
  python3 python3-msgpack          # /usr/bin/python3 with the msgpack C extension
  python3-execnet                  # execnet for the pool benchmark's baseline (bench/execnet_baseline.py)
  python3-numpy                    # ndarrays (ext 7): the tests and the 64 MiB float64 benchmark
  util-linux procps                # taskset (bench pinning), ps/pgrep (leak audits)
  dpkg-dev file                    # the .deb's dependencies (dpkg-shlibdeps) and its test
  openssl                          # the gateway TLS test makes its certificate
  clang libclang-rt-14-dev         # clang 14 + its libFuzzer/ASan/UBSan runtimes (tests/fuzz/run)
  gdb                              # a test that hangs prints every thread's stack (tests/support/bounded_call.hpp)
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if ((${#missing[@]})); then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO=sudo; fi
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
else
  echo "setup: all ${#packages[@]} packages present"
fi
