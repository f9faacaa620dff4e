#pragma once

// The envs of one interpreter as its request table keeps them: which exist, which are durable
// and their recipes (the make_env and the evals marked replay, in the order they succeeded),
// and which are lost and why. Not thread-safe: the request table holds it under its mutex.

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

#include "interpreter/request.hpp"
#include "pyvisor/error.hpp"

namespace pyvisor::interp {

class env_book {
public:
  /// A make_env `r` is sent (r.env: the new env's id); a durable one records its recipe.
  void making(const request& r);
  /// Its answer came: a failed make_env of an env never created is forgotten.
  void made(std::uint64_t id, bool ok);
  /// Whether env `id` is durable (its successful replay evals are recorded).
  bool durable(std::uint64_t id) const;
  /// A replay eval on durable env `id` succeeded: a step of its recipe.
  void replayed(std::uint64_t id, owned_request step);
  /// drop_env: forgotten.
  void drop(std::uint64_t id);

  /// The process ended and another follows: every non-durable env is lost (`cause`).
  void lose_non_durable(const error& cause);
  /// Rebuilding durable env `id` on the new process failed: it is lost.
  void rebuild_failed(std::uint64_t id, const error& cause);
  /// Why env `id` cannot be used (env_lost), or nullopt (usable, or unknown here).
  std::optional<error> error_of(std::uint64_t id) const;
  /// The steps that rebuild every durable env, in creation order.
  std::vector<owned_request> rebuild_plan() const;

private:
  struct entry {
    bool durable = false;
    bool created = false;  // its make_env succeeded
    std::optional<owned_request> make;
    std::vector<owned_request> replays;
    std::optional<error> lost;
  };
  std::map<std::uint64_t, entry> envs_;  // by id = by creation
};

} // namespace pyvisor::interp
