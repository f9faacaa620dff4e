# Process layer: resource limits, identity, seccomp and bubblewrap (pyvisor/isolation.hpp).
set(PYVISOR_ISOLATION_SOURCES
  actors/core/isolation.cpp
  actors/process/identity.cpp
  actors/process/isolation.cpp
  actors/process/seccomp_filter.cpp
  actors/process/sandbox_support.cpp
  actors/process/bwrap_argv.cpp
  actors/process/sandbox_python.cpp
)
# libseccomp compiles the syscall filter (linked privately; installed consumers find it through
# pyvisorConfig.cmake, since the static library needs it at their link).
find_package(PkgConfig REQUIRED)
pkg_check_modules(SECCOMP REQUIRED IMPORTED_TARGET libseccomp)
set(PYVISOR_ISOLATION_LIBS PkgConfig::SECCOMP)
# Tests of this directory (see tests/CMakeLists.txt).
