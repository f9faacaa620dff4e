# The Debian package: `cmake --build <build> --target package` (or `cpack -G DEB` in the build
# directory) writes pyvisor_<version>_<arch>.deb. Included last by the top-level CMakeLists.txt,
# after every install() rule. What goes where: docs/deployment.md.
#
# The package always installs under /usr (Debian policy), whatever CMAKE_INSTALL_PREFIX the tree
# was configured with; configure with -DCMAKE_INSTALL_PREFIX=/usr for a package whose library
# directory is Debian's multiarch one (lib/x86_64-linux-gnu) and whose recorded install paths
# are the package's own. Either way the programs find the runner relative to themselves, and
# libpyvisor also knows the package's runner directory (PYVISOR_PACKAGE_RUNNER_DIR below).
#
# The system files (the config as a conffile in /etc/pyvisor, the systemd unit) belong to the
# install component "system", which a plain `cmake --install` skips (EXCLUDE_FROM_ALL: an
# install into a scratch prefix must not write to /etc); the package takes every component.

set(PYVISOR_PACKAGE_PREFIX "/usr")
set(PYVISOR_PACKAGE_MAINTAINER "pyvisor maintainers" CACHE STRING
  "Maintainer field of the Debian package (\"Name <email>\")")

# libpyvisor's last-resort runner location: the package's (the runner lookup tries it after the
# configured install location, so a program linked elsewhere with the packaged static library
# still finds it). One source file only: nothing else depends on it.
set(PYVISOR_PACKAGE_RUNNER_DIR "${PYVISOR_PACKAGE_PREFIX}/${CMAKE_INSTALL_DATADIR}/pyvisor/python")
if(NOT PYVISOR_PACKAGE_RUNNER_DIR STREQUAL PYVISOR_INSTALL_RUNNER_DIR)
  set_property(SOURCE actors/facade/interpreter_factory.cpp APPEND PROPERTY COMPILE_DEFINITIONS
    "PYVISOR_PACKAGE_RUNNER_DIR=\"${PYVISOR_PACKAGE_RUNNER_DIR}\"")
endif()

set(CPACK_GENERATOR "DEB")
set(CPACK_PACKAGE_NAME "pyvisor")
set(CPACK_PACKAGE_VENDOR "pyvisor")
set(CPACK_PACKAGE_VERSION "${PROJECT_VERSION}")
set(CPACK_PACKAGE_CONTACT "${PYVISOR_PACKAGE_MAINTAINER}")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "Python interpreters run as supervised actors")
# The extended description, wrapped for `dpkg -s` / `apt show` (an empty line: a new paragraph).
string(JOIN "\n" CPACK_PACKAGE_DESCRIPTION
  "pyvisor runs Python interpreters as supervised actors for C++ programs: each"
  "interpreter is a CAF actor owning one OS process, spoken to over pipes in"
  "msgpack frames. Crashes, hangs and floods on the Python side are contained,"
  "reported as typed errors and handled by OTP-style supervisors and pools, with"
  "per-tenant isolation (limits, identity, bubblewrap sandbox, seccomp)."
  ""
  "This package ships the pyvisor program (eval, check, env sync, and the serve"
  "daemon with its systemd unit), the Python runner, the default configuration,"
  "and the C++ library with its headers and CMake package.")
set(CPACK_PACKAGING_INSTALL_PREFIX "${PYVISOR_PACKAGE_PREFIX}")
# Absolute install destinations (/etc, /lib/systemd) land in the staging tree, not on this host.
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX "${PYVISOR_PACKAGE_PREFIX}")
# Every install component (the default one and "system") in the one package: a component
# install (a monolithic one would skip the EXCLUDE_FROM_ALL component) grouped into one .deb.
get_cmake_property(CPACK_COMPONENTS_ALL COMPONENTS)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_GROUPING ALL_COMPONENTS_IN_ONE)
# Programs stripped (the static library keeps its symbols: its install rule strips debug info).
set(CPACK_STRIP_FILES ON)

set(CPACK_DEBIAN_FILE_NAME "DEB-DEFAULT")  # pyvisor_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION "utils")
set(CPACK_DEBIAN_PACKAGE_PRIORITY "optional")
# Depends: the runner needs Python >= 3.8 (Debian 12 ships 3.11); the shared libraries the
# program links (libcaf_core, libuv, libcpp-httplib, which brings libssl3, libseccomp,
# boost_filesystem, libc, libstdc++) come from dpkg-shlibdeps when it is there (package
# dpkg-dev), else from the list below, which names Debian 12's packages. The headers need the -dev packages to build against
# the library: Suggests, not Depends (running the program does not need them).
find_program(PYVISOR_DPKG_SHLIBDEPS dpkg-shlibdeps)
find_program(PYVISOR_FILE_PROGRAM file)
mark_as_advanced(PYVISOR_DPKG_SHLIBDEPS PYVISOR_FILE_PROGRAM)
if(PYVISOR_DPKG_SHLIBDEPS AND PYVISOR_FILE_PROGRAM)
  set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "python3 (>= 3.8)")
else()
  set(CPACK_DEBIAN_PACKAGE_DEPENDS "python3 (>= 3.8), libc6 (>= 2.34), libstdc++6 (>= 12), \
libgcc-s1, libcaf-core0.17 (>= 0.17.6), libuv1 (>= 1.40), libcpp-httplib0.11, libseccomp2, \
libboost-filesystem1.74.0")
endif()
# bubblewrap: tenants with sandbox = "bwrap"; python3-venv/pip: `pyvisor env sync`;
# python3-msgpack: the runner's fast codec (it has its own pure-Python one).
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "bubblewrap, python3-msgpack")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "python3-venv, python3-pip, libcaf-dev, libmsgpack-cxx-dev, \
libuv1-dev, libboost-filesystem1.74-dev, libseccomp-dev")

# Maintainer scripts (cmake/deb/) and the conffiles list; strict permissions: scripts 0755,
# conffiles 0644, whatever the checkout's modes.
set(_pyvisor_conffiles "${CMAKE_CURRENT_BINARY_DIR}/deb/conffiles")
file(WRITE "${_pyvisor_conffiles}" "/etc/pyvisor/pyvisor.toml\n")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  "${_pyvisor_conffiles}"
  "${CMAKE_CURRENT_LIST_DIR}/deb/postinst"
  "${CMAKE_CURRENT_LIST_DIR}/deb/prerm"
  "${CMAKE_CURRENT_LIST_DIR}/deb/postrm")
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION TRUE)

include(CPack)
