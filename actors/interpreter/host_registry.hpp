#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <string>

#include <caf/actor.hpp>

#include "pyvisor/host_function.hpp"

namespace pyvisor::interp {

/// What Python may reach on the host: exposed functions and actors by name, and actors by
/// opaque handle. One per runtime, shared by its interpreters; thread-safe.
class host_registry {
public:
  void expose(std::string name, host_function f) {
    std::lock_guard<std::mutex> g{mu_};
    functions_[std::move(name)] = std::move(f);
  }
  void expose(std::string name, caf::actor a) {
    std::lock_guard<std::mutex> g{mu_};
    actors_[std::move(name)] = std::move(a);
  }
  void unexpose(const std::string& name) {
    std::lock_guard<std::mutex> g{mu_};
    functions_.erase(name);
    actors_.erase(name);
  }
  std::optional<host_function> function(const std::string& name) const {
    std::lock_guard<std::mutex> g{mu_};
    auto i = functions_.find(name);
    if (i == functions_.end())
      return std::nullopt;
    return i->second;
  }
  caf::actor actor(const std::string& name) const {
    std::lock_guard<std::mutex> g{mu_};
    auto i = actors_.find(name);
    return i == actors_.end() ? caf::actor{} : i->second;
  }
  /// An opaque token for `a` (the same actor always gets the same token).
  std::string handle_for(const caf::actor& a) {
    std::lock_guard<std::mutex> g{mu_};
    for (auto& [token, x] : handles_)
      if (x == a)
        return token;
    std::string token = "actor:" + std::to_string(next_handle_++);
    handles_[token] = a;
    return token;
  }
  caf::actor by_handle(const std::string& token) const {
    std::lock_guard<std::mutex> g{mu_};
    auto i = handles_.find(token);
    return i == handles_.end() ? caf::actor{} : i->second;
  }
  /// Drops every actor reference (runtime shutdown).
  void clear() {
    std::lock_guard<std::mutex> g{mu_};
    functions_.clear();
    actors_.clear();
    handles_.clear();
  }

private:
  mutable std::mutex mu_;
  std::map<std::string, host_function> functions_;
  std::map<std::string, caf::actor> actors_;
  std::map<std::string, caf::actor> handles_;
  std::uint64_t next_handle_ = 1;
};

} // namespace pyvisor::interp
