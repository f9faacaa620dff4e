#include "io/line_splitter.hpp"

namespace pyvisor::io {

void line_splitter::emit_capped(std::string_view line, std::size_t max, const sink& out) {
  if (!line.empty() && line.back() == '\r')
    line.remove_suffix(1);
  while (line.size() > max) {
    out(line.substr(0, max));
    line.remove_prefix(max);
  }
  out(line);
}

void line_splitter::feed(std::string_view bytes, const sink& out) {
  std::size_t start = 0;
  for (std::size_t j = 0; j < bytes.size(); ++j) {
    if (bytes[j] != '\n')
      continue;
    if (partial_.empty()) {
      emit_capped(bytes.substr(start, j - start), max_, out);
    } else {
      partial_.append(bytes.substr(start, j - start));
      emit_capped(partial_, max_, out);
      partial_.clear();
    }
    start = j + 1;
  }
  partial_.append(bytes.substr(start));
  std::size_t cut = 0;
  while (partial_.size() - cut >= max_) {
    out(std::string_view{partial_}.substr(cut, max_));
    cut += max_;
  }
  if (cut > 0)
    partial_.erase(0, cut);
}

void line_splitter::finish(const sink& out) {
  if (partial_.empty())
    return;
  emit_capped(partial_, max_, out);
  partial_.clear();
}

} // namespace pyvisor::io
