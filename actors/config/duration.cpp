// Durations and sizes of config files (pyvisor/config.hpp). Stub: filled by the config layer.
#include "pyvisor/config.hpp"
