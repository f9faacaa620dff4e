#!/usr/bin/env bash
# Usage: run.sh BUILD_DIR
#
# Builds the Debian package of BUILD_DIR into a scratch directory (cpack with BUILD_DIR's
# CPackConfig.cmake; its preinstall step builds what is out of date: nothing on a built tree),
# checks the file list, the control fields, the conffiles and maintainer scripts, and the systemd
# unit (systemd-analyze verify, when present). Then unpacks it (dpkg-deb -x) into a scratch root INSIDE the build directory and runs
# <root>/usr/bin/pyvisor eval there with a clean environment: it must work and must run the
# scratch root's runner, not the source tree's (which a binary below the build directory used
# to prefer); and again after moving the root out of the build directory. Every step is bounded
# in time; the scratch directories are removed on exit.
set -euo pipefail
build=$(cd "$1" && pwd -P)
fail() { echo "FAIL: $*" >&2; exit 1; }
step() { printf '== %s\n' "$*"; }
[[ -f $build/CPackConfig.cmake ]] || fail "$build has no CPackConfig.cmake (cmake/Packaging.cmake)"
cpack=$(sed -n 's/^CMAKE_CPACK_COMMAND:INTERNAL=//p' "$build/CMakeCache.txt")
[[ -x $cpack ]] || cpack=$(command -v cpack) || fail "no cpack"

work=$(mktemp -d "$build/packaging-test.XXXXXX")
moved=$(mktemp -d)
trap 'rm -rf "$work" "$moved"' EXIT

step "cpack -G DEB"
start=$SECONDS
timeout 240 "$cpack" -G DEB --config "$build/CPackConfig.cmake" -B "$work/pkg" \
  > "$work/cpack.log" 2>&1 || { cat "$work/cpack.log" >&2; fail "cpack failed"; }
echo "cpack took $((SECONDS - start)) s"
version=$(sed -n 's/^set(CPACK_PACKAGE_VERSION "\(.*\)")$/\1/p' "$build/CPackConfig.cmake")
arch=$(dpkg --print-architecture)
deb=$work/pkg/pyvisor_${version}_${arch}.deb
[[ -f $deb ]] || { ls -l "$work/pkg" >&2; fail "no $deb"; }
ls -l "$deb"

step "file list"
dpkg-deb -c "$deb" | awk '{print $6}' | sed 's|^\./|/|' > "$work/files"
need() { grep -qxE "$1" "$work/files" || fail "the package has no $1"; }
need /usr/bin/pyvisor
need /usr/share/pyvisor/python/pyvisor/_runner.py
need /usr/share/pyvisor/python/pyvisor/__init__.py
need /etc/pyvisor/pyvisor.toml
need /lib/systemd/system/pyvisor.service
need /usr/include/pyvisor/runtime.hpp
need '/usr/lib(/[a-z0-9_-]+)?/libpyvisor\.a'
need '/usr/lib(/[a-z0-9_-]+)?/cmake/pyvisor/pyvisorConfig\.cmake'
need '/usr/lib(/[a-z0-9_-]+)?/cmake/pyvisor/pyvisorConfigVersion\.cmake'
need '/usr/lib(/[a-z0-9_-]+)?/cmake/pyvisor/pyvisorTargets\.cmake'
need /usr/share/doc/pyvisor/examples/isolated.toml
need /usr/share/doc/pyvisor/deployment.md
if grep -E '__pycache__|\.pyc$|^/usr/local|^/(home|root|tmp|work)/' "$work/files"; then
  fail "stray files in the package (above)"
fi
echo "$(grep -vc '/$' "$work/files") files"

step "control"
dpkg-deb -f "$deb" > "$work/control"
cat "$work/control"
field() { dpkg-deb -f "$deb" "$1"; }
[[ $(field Package) == pyvisor ]] || fail "Package"
[[ $(field Version) == "$version" ]] || fail "Version"
[[ $(field Architecture) == "$arch" ]] || fail "Architecture"
[[ -n $(field Maintainer) ]] || fail "no Maintainer"
[[ -n $(field Section) ]] || fail "no Section"
[[ -n $(field Description) ]] || fail "no Description"
[[ -z $(field Homepage) ]] || fail "a Homepage field"
depends=$(field Depends)
# The libraries the program links (libssl3 comes with libcpp-httplib0.11).
for lib in 'python3 ' libcaf-core0.17 libuv1 libcpp-httplib libseccomp2 libboost-filesystem1.74.0 \
    libstdc++6 libc6; do
  [[ $depends == *"$lib"* ]] || fail "Depends lacks $lib: $depends"
done
[[ $(field Recommends) == *bubblewrap* ]] || fail "Recommends lacks bubblewrap"
dpkg-deb -e "$deb" "$work/DEBIAN"
[[ $(cat "$work/DEBIAN/conffiles") == /etc/pyvisor/pyvisor.toml ]] || fail "conffiles"
for s in postinst prerm postrm; do
  [[ -x $work/DEBIAN/$s ]] || fail "$s is not an executable maintainer script"
  sh -n "$work/DEBIAN/$s" || fail "$s does not parse"
done

step "unpack into $work/root (inside the build directory)"
dpkg-deb -x "$deb" "$work/root"
root=$work/root
if command -v file > /dev/null; then
  file -L "$root/usr/bin/pyvisor" | grep -q 'not stripped' && fail "the program is not stripped"
fi

# Runs the unpacked program from a cwd outside the source tree, with nothing of this
# environment but PATH (so /usr/bin/python3, and no PYVISOR_RUNNER_DIR).
run() { (cd "$moved" && timeout 60 env -i PATH=/usr/bin:/bin HOME="$moved" "$@"); }
check_root() {
  local root=$1 out
  out=$(run "$root/usr/bin/pyvisor" eval 'return 1 + 1') || fail "eval failed: $out"
  [[ $out == 2 ]] || fail "eval printed '$out', not 2"
  out=$(run "$root/usr/bin/pyvisor" eval \
    'import os, pyvisor._runner as r; return os.path.realpath(r.__file__)') \
    || fail "eval failed: $out"
  echo "runner: $out"
  [[ $out == "\"$root/usr/share/pyvisor/python/pyvisor/_runner.py\"" ]] \
    || fail "the unpacked program ran the runner $out, not the one under $root"
}
check_root "$root"

step "the explicit override: PYVISOR_RUNNER_DIR is used as given, even when wrong"
if out=$(run PYVISOR_RUNNER_DIR="$moved/nowhere" "$root/usr/bin/pyvisor" eval 'return 1' 2>&1); then
  fail "a wrong PYVISOR_RUNNER_DIR was ignored: $out"
fi
[[ $out == *"$moved/nowhere"* ]] || fail "the error does not name PYVISOR_RUNNER_DIR's value: $out"
out=$(run PYVISOR_RUNNER_DIR="$root/usr/share/pyvisor/python" "$root/usr/bin/pyvisor" eval 'return 3') \
  || fail "PYVISOR_RUNNER_DIR=<the root's runner>: $out"
[[ $out == 3 ]] || fail "with PYVISOR_RUNNER_DIR eval printed '$out'"

step "moved out of the build directory"
mv "$root" "$moved/root"
check_root "$(cd "$moved/root" && pwd -P)"

if command -v systemd-analyze > /dev/null; then
  step "systemd-analyze verify (ExecStart pointed at the unpacked program)"
  unit=$moved/pyvisor.service
  sed -e "s|/usr/bin/pyvisor|$moved/root/usr/bin/pyvisor|" \
    "$moved/root/lib/systemd/system/pyvisor.service" > "$unit"
  timeout 60 systemd-analyze verify "$unit" > "$work/verify.log" 2>&1 \
    || { cat "$work/verify.log" >&2; fail "systemd-analyze verify"; }
  if [[ -s $work/verify.log ]]; then cat "$work/verify.log" >&2; fail "systemd-analyze warnings"; fi
fi
echo "packaging ok"
