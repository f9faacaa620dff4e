#!/usr/bin/env bash
# Installs the build tree into a scratch prefix, builds tests/install as an outside project
# against it with find_package(pyvisor), and runs it with the installed runner.
set -euo pipefail
build=$1
src=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cmake --install "$build" --prefix "$work/prefix" > "$work/install.log"
cmake -S "$src" -B "$work/build" -DCMAKE_PREFIX_PATH="$work/prefix" -DCMAKE_BUILD_TYPE=Release > "$work/configure.log"
cmake --build "$work/build" > "$work/build.log"
test -f "$work/prefix/share/pyvisor/python/pyvisor/_runner.py"
PYVISOR_RUNNER_DIR="$work/prefix/share/pyvisor/python" "$work/build/consumer"
