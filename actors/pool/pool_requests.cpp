#include "pool/pool_requests.hpp"

#include <caf/all.hpp>

#include "interpreter/actor_request.hpp"
#include "pyvisor/actor_interface.hpp"

namespace pyvisor::pooling {

namespace {

using done_atom = caf::atom_constant<caf::atom("p_done")>;

/// A finished request as one message: the value or the error, and the worker that answered.
struct finished_call {
  std::optional<value> ok;
  error err;
  std::uint32_t worker = 0;
};


} // namespace

} // namespace pyvisor::pooling

CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::pooling::finished_call)

namespace pyvisor::pooling {

dispatcher::completion pool_requests::done_to_self(std::uint64_t k) {
  return [self = self_.address(), k](protocol::reply rep, const std::shared_ptr<worker>& w) {
    finished_call f;
    if (rep.result)
      f.ok = std::move(*rep.result);
    else
      f.err = std::move(rep.result).error();
    f.worker = w ? w->number : 0;
    if (auto a = caf::actor_cast<caf::actor>(self))
      caf::anon_send(a, done_atom::value, k, std::move(f));
  };
}

caf::response_promise pool_requests::answer_now(const error& e) {
  auto rp = self_.make_response_promise();
  rp.deliver(to_caf_error(e));
  return rp;
}

caf::response_promise pool_requests::forward(const interp::request& r, interp::deadline d,
                                             std::string_view key, std::uint64_t new_env) {
  // Requests on an env go to the worker that holds it. (Decided before the response promise
  // is made: a request has exactly one.)
  std::shared_ptr<worker> pinned;
  if (r.env != 0 && r.op != interp::request::op_t::make_env) {
    auto i = envs_.find(r.env);
    pinned = i == envs_.end() ? nullptr : disp_->find(i->second);
    if (!pinned)
      return answer_now(make_error(i == envs_.end() ? errc::env_not_found : errc::env_lost,
                                   "env " + std::to_string(r.env) +
                                     (i == envs_.end() ? " does not exist in this pool"
                                                       : ": its worker left the pool")));
  }
  auto rp = self_.make_response_promise();
  auto k = ++next_call_;
  calls_.emplace(k, call{rp, new_env});
  if (pinned)
    disp_->submit_to(pinned, r, d, done_to_self(k));
  else
    disp_->submit(r, d, key, done_to_self(k));
  return rp;
}

caf::message_handler pool_requests::handlers() {
  return {
    [this](eval_atom, eval_request& req) {
      if (auto e = interp::check_actor_options(req.options))
        return answer_now(*e);
      return forward(interp::request_of(req),
                     interp::deadline_for(req.options.timeout, default_timeout_), req.options.key, 0);
    },
    [this](call_atom, call_request& req) {
      if (auto e = interp::check_actor_options(req.options))
        return answer_now(*e);
      return forward(interp::request_of(req),
                     interp::deadline_for(req.options.timeout, default_timeout_), req.options.key, 0);
    },
    [this](make_env_atom, make_env_request& req) {
      if (auto e = interp::check_timeout(req.timeout))
        return answer_now(*e);
      std::vector<protocol::env_spec> from;
      std::optional<std::uint32_t> home;
      for (auto& f : req.from) {
        if (auto e = interp::check_env_source(f.only.has_value(), f.except.has_value()))
          return answer_now(*e);
        auto i = envs_.find(f.env);
        if (i == envs_.end())
          return answer_now(make_error(errc::env_not_found,
                                       "env " + std::to_string(f.env) + " does not exist in this pool"));
        if (home && *home != i->second)
          return answer_now(make_error(errc::invalid_argument,
                                       "make_env: the sources live on different workers"));
        home = i->second;
        from.push_back({f.env, f.only, f.except});
      }
      interp::request r;
      r.op = interp::request::op_t::make_env;
      r.env = disp_->next_env_id();
      r.from = &from;
      r.bound = &req.vars;
      r.durable = req.durable;
      auto d = interp::deadline_for(req.timeout, default_timeout_);
      if (home) {  // copied from envs: made where they live
        auto w = disp_->find(*home);
        if (!w)
          return answer_now(make_error(errc::env_lost, "the sources' worker left the pool"));
        auto rp = self_.make_response_promise();
        auto k = ++next_call_;
        calls_.emplace(k, call{rp, r.env});
        disp_->submit_to(w, r, d, done_to_self(k));
        return rp;
      }
      return forward(r, d, req.key, r.env);
    },
    [this](drop_env_atom, std::uint64_t env) {
      auto i = envs_.find(env);
      if (i == envs_.end())
        return;
      if (auto w = disp_->find(i->second); w && w->table)
        w->table->drop_env(env);
      envs_.erase(i);
    },
    [this](done_atom, std::uint64_t k, finished_call& f) {
      auto i = calls_.find(k);
      if (i == calls_.end())
        return;
      auto c = std::move(i->second);
      calls_.erase(i);
      if (!f.ok) {
        c.rp.deliver(to_caf_error(f.err));
      } else if (c.env != 0) {
        envs_[c.env] = f.worker;
        c.rp.deliver(c.env);
      } else {
        c.rp.deliver(std::move(*f.ok));
      }
    },
  };
}

} // namespace pyvisor::pooling
