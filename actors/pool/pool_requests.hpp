#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>

#include <caf/message_handler.hpp>
#include <caf/event_based_actor.hpp>
#include <caf/response_promise.hpp>

#include "pool/dispatcher.hpp"

namespace pyvisor::pooling {

/// The request half of a pool actor's interface (pyvisor/pool.hpp): eval, call, make_env and
/// drop_env through the dispatcher, answered when the worker answers. Envs made here get a
/// pool-wide id and stay pinned to their worker.
class pool_requests {
public:
  pool_requests(caf::event_based_actor& self, std::shared_ptr<dispatcher> disp,
                std::chrono::milliseconds default_timeout)
    : self_(self), disp_(std::move(disp)), default_timeout_(default_timeout) {}

  caf::message_handler handlers();

private:
  struct call {
    caf::response_promise rp;
    std::uint64_t env = 0;  // make_env: the new env's id
  };
  caf::response_promise forward(const interp::request& r, interp::deadline d, std::string_view key,
                                std::uint64_t new_env);
  caf::response_promise answer_now(const error& e);
  /// Answers call `k` through a message to the actor (completions run on the I/O thread).
  dispatcher::completion done_to_self(std::uint64_t k);

  caf::event_based_actor& self_;
  std::shared_ptr<dispatcher> disp_;
  std::chrono::milliseconds default_timeout_;
  std::uint64_t next_call_ = 0;
  std::map<std::uint64_t, call> calls_;
  std::map<std::uint64_t, std::uint32_t> envs_;  // env id -> worker number
};

} // namespace pyvisor::pooling
