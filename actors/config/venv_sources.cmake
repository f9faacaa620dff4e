# Config layer: declarative venvs (pyvisor/venv.hpp). Boost.Process (header-only, on the
# library's Boost::filesystem) runs python -m venv and pip/uv.
set(PYVISOR_VENV_SOURCES
  actors/config/venv.cpp
)
