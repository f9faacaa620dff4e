// The interpreter actor: durable envs rebuilt, in order, on a new process before it is ready.

#include "interpreter/interpreter_actor_impl.hpp"

namespace pyvisor::interp {

void interpreter_actor::run_rebuild_step(std::size_t i) {
  while (i < rebuild_.size() && rebuild_[i].env == rebuild_failed_env_ && rebuild_failed_env_ != 0)
    ++i;  // the rest of an env whose rebuild failed
  if (i >= rebuild_.size()) {
    rebuild_.clear();
    became_ready();
    return;
  }
  auto r = rebuild_[i].view();
  a_.table->submit(
    r, deadline::none(),
    [self = address(), inc = inc_, i](protocol::reply rep) {
      if (auto a = caf::actor_cast<caf::actor>(self))
        caf::anon_send(a, rebuilt_atom::value, inc, i, call_result::from(std::move(rep)));
    },
    /*priority=*/true);
}

void interpreter_actor::on_rebuild_step(std::size_t i, call_result& r) {
  if (i >= rebuild_.size())
    return;
  if (!r.ok) {
    auto env = rebuild_[i].env;
    a_.table->env_rebuild_failed(env, r.err);
    log_runtime("durable env " + std::to_string(env) + " could not be rebuilt: " +
                r.err.to_string());
    rebuild_failed_env_ = env;
  }
  run_rebuild_step(i + 1);
}

} // namespace pyvisor::interp
