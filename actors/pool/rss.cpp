#include <cstdio>
#include <string>

#include <unistd.h>

#include "pool/worker.hpp"

namespace pyvisor::pooling {

std::size_t read_rss_bytes(int pid) noexcept {
  if (pid <= 0)
    return 0;
  auto path = "/proc/" + std::to_string(pid) + "/statm";
  std::FILE* f = std::fopen(path.c_str(), "r");
  if (f == nullptr)
    return 0;
  unsigned long size = 0, resident = 0;
  int n = std::fscanf(f, "%lu %lu", &size, &resident);
  std::fclose(f);
  if (n != 2)
    return 0;
  static const long page = ::sysconf(_SC_PAGESIZE);
  return static_cast<std::size_t>(resident) * static_cast<std::size_t>(page > 0 ? page : 4096);
}

} // namespace pyvisor::pooling
