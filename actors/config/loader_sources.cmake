# Config layer: TOML loading, validation, writing (pyvisor/config.hpp). toml++ is header-only;
# only reader.cpp, loader_sections.cpp and loader.cpp include it.
set(PYVISOR_CONFIG_SOURCES
  actors/config/duration.cpp
  actors/config/listen_address.cpp
  actors/config/problem.cpp
  actors/config/reader.cpp
  actors/config/loader_sections.cpp
  actors/config/loader.cpp
  actors/config/validate.cpp
  actors/config/validate_tree.cpp
  actors/config/writer.cpp
)
