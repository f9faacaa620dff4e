#include "interpreter/env_book.hpp"

#include <string>

namespace pyvisor::interp {

void env_book::making(const request& r) {
  auto& e = envs_[r.env];
  e.durable = r.durable;
  if (r.durable)
    e.make = owned_request::of(r);
}

void env_book::made(std::uint64_t id, bool ok) {
  auto i = envs_.find(id);
  if (i == envs_.end())
    return;
  if (ok)
    i->second.created = true;
  else if (!i->second.created)
    envs_.erase(i);
}

bool env_book::durable(std::uint64_t id) const {
  auto i = envs_.find(id);
  return i != envs_.end() && i->second.durable;
}

void env_book::replayed(std::uint64_t id, owned_request step) {
  auto i = envs_.find(id);
  if (i != envs_.end())
    i->second.replays.push_back(std::move(step));
}

void env_book::drop(std::uint64_t id) {
  envs_.erase(id);
}

void env_book::lose_non_durable(const error& cause) {
  for (auto& [id, e] : envs_) {
    if (e.durable || e.lost)
      continue;
    e.lost = make_error(errc::env_lost, "env " + std::to_string(id) +
                                          " is lost: its process ended (" + cause.message + ")");
  }
}

void env_book::rebuild_failed(std::uint64_t id, const error& cause) {
  auto i = envs_.find(id);
  if (i == envs_.end())
    return;
  auto e = make_error(errc::env_lost, "env " + std::to_string(id) +
                                        " is lost: rebuilding it on the new process failed: " +
                                        cause.to_string());
  e.python_type = cause.python_type;
  e.traceback = cause.traceback;
  i->second.lost = std::move(e);
}

std::optional<error> env_book::error_of(std::uint64_t id) const {
  auto i = envs_.find(id);
  if (i == envs_.end() || !i->second.lost)
    return std::nullopt;
  return i->second.lost;
}

std::vector<owned_request> env_book::rebuild_plan() const {
  std::vector<owned_request> out;
  for (auto& [id, e] : envs_) {
    if (!e.durable || e.lost || !e.created || !e.make)
      continue;
    out.push_back(*e.make);
    for (auto& r : e.replays)
      out.push_back(r);
  }
  return out;
}

} // namespace pyvisor::interp
