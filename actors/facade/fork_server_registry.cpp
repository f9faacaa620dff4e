#include "facade/fork_server_registry.hpp"

#include <algorithm>

namespace pyvisor::detail {

namespace {

bool same_template(const process::spawn_request& a, const process::spawn_request& b) {
  return a.argv == b.argv && a.env == b.env && a.cwd == b.cwd && a.isolation == b.isolation;
}

} // namespace

std::shared_ptr<process::fork_server> fork_server_registry::get(
  const process::spawn_request& tmpl, process::fork_server::line_fn on_line) {
  std::vector<std::shared_ptr<process::fork_server>> unused;  // shut down outside the lock
  std::shared_ptr<process::fork_server> found;
  {
    std::lock_guard<std::mutex> g{mu_};
    for (auto& e : entries_)
      if (same_template(e.key, tmpl))
        found = e.server;
    auto unused_end = std::stable_partition(entries_.begin(), entries_.end(), [&](auto& e) {
      return e.server == found || e.server.use_count() > 1;
    });
    for (auto it = unused_end; it != entries_.end(); ++it)
      unused.push_back(std::move(it->server));
    entries_.erase(unused_end, entries_.end());
    if (!found) {
      found = std::make_shared<process::fork_server>(tmpl, std::move(on_line));
      if (shut_down_)
        found->shutdown();  // requests fail at once: the runtime is shutting down
      else
        entries_.push_back(entry{tmpl, found});
    }
  }
  for (auto& s : unused)
    s->shutdown();
  return found;
}

void fork_server_registry::shutdown() {
  std::vector<entry> all;
  {
    std::lock_guard<std::mutex> g{mu_};
    shut_down_ = true;
    all.swap(entries_);
  }
  for (auto& e : all)
    e.server->shutdown();
}

} // namespace pyvisor::detail
