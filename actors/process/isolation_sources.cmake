# Process layer: resource limits, identity, seccomp and bubblewrap (pyvisor/isolation.hpp).
set(PYVISOR_ISOLATION_SOURCES
  actors/core/isolation.cpp
)
set(PYVISOR_ISOLATION_LIBS)
