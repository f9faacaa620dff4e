// The supervisor actor: the facade's requests (start/terminate/restart/delete a child,
// which_children, count_children, stop).

#include "supervision/supervisor_actor_impl.hpp"

namespace pyvisor::supervision {

caf::response_promise supervisor_actor::start_child(child_spec spec) {
  auto rp = make_response_promise();
  if (auto e = refuse_while_ending()) {
    rp.deliver(to_caf_error(*e));
    return rp;
  }
  if (spec.id.empty() || find(spec.id) != nullptr) {
    rp.deliver(to_caf_error(make_error(
      errc::invalid_argument, "a child needs an id unique in its supervisor ('" + spec.id + "')")));
    return rp;
  }
  if (int(spec.interpreter.has_value()) + int(spec.supervisor != nullptr) +
        int(spec.pool != nullptr) != 1) {
    rp.deliver(to_caf_error(make_error(
      errc::invalid_argument, "a child spec needs exactly one of interpreter, supervisor, pool")));
    return rp;
  }
  auto id = spec.id;
  children_.emplace_back(std::move(spec), cfg_.spec.backoff);
  enqueue({step::start, id, duration{0}, reply_to(rp)});
  return rp;
}

caf::response_promise supervisor_actor::terminate_child(const std::string& id) {
  auto rp = make_response_promise();
  auto c = find(id);
  if (c == nullptr) {
    rp.deliver(to_caf_error(make_error(errc::invalid_argument, "no child '" + id + "'")));
    return rp;
  }
  c->terminated = true;
  // Dropped from the plan: a restart of it that was waiting.
  plan_.erase(std::remove_if(plan_.begin(), plan_.end(),
                             [&](const step& s) { return s.kind == step::start && s.id == id && !s.done; }),
              plan_.end());
  enqueue({step::stop, id, duration{0}, reply_to(rp, true)});
  return rp;
}

caf::response_promise supervisor_actor::restart_child(const std::string& id) {
  auto rp = make_response_promise();
  auto c = find(id);
  if (auto e = refuse_while_ending()) {
    rp.deliver(to_caf_error(*e));
  } else if (c == nullptr) {
    rp.deliver(to_caf_error(make_error(errc::invalid_argument, "no child '" + id + "'")));
  } else if (c->alive() || !c->terminated) {
    rp.deliver(to_caf_error(make_error(errc::invalid_argument, "child '" + id + "' is " +
                                                                 (c->alive() ? "running" : "restarting"))));
  } else {
    c->terminated = false;
    enqueue({step::start, id, duration{0}, reply_to(rp)});
  }
  return rp;
}

caf::response_promise supervisor_actor::delete_child(const std::string& id) {
  auto rp = make_response_promise();
  auto c = find(id);
  if (c == nullptr) {
    rp.deliver(to_caf_error(make_error(errc::invalid_argument, "no child '" + id + "'")));
  } else if (c->alive() || !c->terminated) {
    rp.deliver(to_caf_error(make_error(
      errc::invalid_argument, "child '" + id + "' is not terminated (terminate_child first)")));
  } else {
    remove_child(id);
    rp.deliver(true);
  }
  return rp;
}

std::vector<child_info> supervisor_actor::which_children() {
  std::vector<child_info> out;
  auto now = clock().now();
  for (auto& c : children_) {
    child_info i;
    i.id = c.spec.id;
    i.is_supervisor = c.is_supervisor();
    i.state = c.state;
    if (c.state == child_info::stopped && !c.terminated && running_ && !gave_up_ && !stopping_)
      i.state = child_info::restarting;
    i.pid = c.pid;
    i.restarts = c.starts > 0 ? c.starts - 1 : 0;
    i.last_exit = c.last_exit;
    if (c.state == child_info::running)
      i.uptime = std::chrono::duration_cast<duration>(now - c.up_since);
    out.push_back(std::move(i));
  }
  return out;
}

child_counts supervisor_actor::count_children() {
  child_counts n;
  for (auto& c : children_) {
    ++n.specs;
    if (c.state == child_info::running)
      ++n.active;
    if (c.is_supervisor())
      ++n.supervisors;
    else
      ++n.workers;
  }
  return n;
}

std::optional<error> supervisor_actor::refuse_while_ending() const {
  if (stopping_ || gave_up_)
    return make_error(errc::shutting_down, "supervisor '" + cfg_.spec.name + "' is stopping");
  return std::nullopt;
}

} // namespace pyvisor::supervision
