# Config layer: TOML loading, validation, writing (pyvisor/config.hpp). toml++ is header-only.
set(PYVISOR_CONFIG_SOURCES
  actors/config/duration.cpp
)
