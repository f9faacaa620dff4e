# Config layer: declarative venvs (pyvisor/venv.hpp).
set(PYVISOR_VENV_SOURCES
)
