#include "interpreter/host_actor.hpp"

#include <algorithm>
#include <optional>

#include <caf/all.hpp>

#include "interpreter/session.hpp"
#include "protocol/message.hpp"
#include "pyvisor/actor_interface.hpp"
#include "pyvisor/types.hpp"

namespace pyvisor::interp {

namespace {

class host_actor : public caf::event_based_actor {
public:
  host_actor(caf::actor_config& cfg, std::shared_ptr<host_registry> hosts,
             std::vector<std::pair<std::string, host_function>> functions,
             std::optional<std::vector<std::string>> allowed, caf::actor_addr interpreter)
    : caf::event_based_actor(cfg), hosts_(std::move(hosts)), functions_(std::move(functions)),
      allowed_(std::move(allowed)), interpreter_(std::move(interpreter)) {
  }

  caf::behavior make_behavior() override {
    return {
      [this](host_message& h) { on_host(h); },
    };
  }

private:
  /// Whether Python may reach the runtime's exposure `name` (interpreter_options::
  /// allowed_host_functions); the interpreter's own functions are always reachable.
  bool allowed(const std::string& name) const {
    return !allowed_ || std::find(allowed_->begin(), allowed_->end(), name) != allowed_->end();
  }

  /// Every message ends with from->host_done() (flow control), exactly once.
  void on_host(host_message& h) {
    auto from = h.from;
    auto respond_error = [&](std::string_view code, std::string message) {
      if (h.kind == host_message::call)
        from->respond(protocol::encode_error_response(h.rid, "host_call", code, "HostError", message));
      else
        from->log_runtime(message);
    };
    if (h.kind == host_message::send) {
      caf::actor target;
      if (h.target) {
        if (auto t = h.target->to<host_handle>())
          target = hosts_->by_handle(t->bytes);
      } else if (allowed(h.name)) {
        target = hosts_->actor(h.name);
      }
      auto sender = caf::actor_cast<caf::actor>(interpreter_);
      if (target && sender)
        caf::send_as(sender, target, python_message_atom::value,
                     h.args.empty() ? value{} : h.args[0]);
      else if (target)
        caf::anon_send(target, python_message_atom::value, h.args.empty() ? value{} : h.args[0]);
      else
        from->log_runtime("pyvisor.send: no actor exposed as '" + h.name + "' (message dropped)");
      from->host_done();
      return;
    }
    std::optional<host_function> fn;
    for (auto& [name, f] : functions_)
      if (name == h.name)
        fn = f;
    if (!fn && allowed(h.name))
      fn = hosts_->function(h.name);
    if (fn) {
      try {
        auto label = from->label();
        auto r = (*fn)(host_call{h.name, h.args, label, from->pid()});
        if (h.kind == host_message::call) {
          if (r)
            from->respond(protocol::encode_ok_response(h.rid, "host_call", *r));
          else
            respond_error("host_error", "host function '" + h.name + "' failed: " + r.error().to_string());
        } else if (!r) {
          from->log_runtime("host function '" + h.name + "' failed in a cast: " + r.error().to_string());
        }
      } catch (const std::exception& e) {
        respond_error("host_error", "host function '" + h.name + "' threw: " + e.what());
      }
      from->host_done();
      return;
    }
    if (auto target = allowed(h.name) ? hosts_->actor(h.name) : caf::actor{}) {
      if (h.kind == host_message::cast) {
        caf::anon_send(target, host_cast_atom::value, h.name, std::move(h.args));
        from->host_done();
        return;
      }
      auto rid = h.rid;
      auto name = h.name;
      request(target, caf::infinite, host_call_atom::value, name, std::move(h.args))
        .then(
          [from, rid](const arg& r) {
            from->respond(protocol::encode_ok_response(rid, "host_call", r));
            from->host_done();
          },
          [from, rid, name, this](const caf::error& e) {
            from->respond(protocol::encode_error_response(
              rid, "host_call", "host_error", "HostError",
              "host actor '" + name + "' failed: " + system().render(e)));
            from->host_done();
          });
      return;
    }
    respond_error("not_exposed", "'" + h.name + "' is not exposed by the host");
    from->host_done();
  }

  std::shared_ptr<host_registry> hosts_;
  std::vector<std::pair<std::string, host_function>> functions_;
  std::optional<std::vector<std::string>> allowed_;
  caf::actor_addr interpreter_;
};

} // namespace

caf::actor spawn_host_actor(caf::actor_system& sys, std::shared_ptr<host_registry> hosts,
                            std::vector<std::pair<std::string, host_function>> functions,
                            std::optional<std::vector<std::string>> allowed,
                            caf::actor_addr interpreter) {
  return sys.spawn<host_actor>(std::move(hosts), std::move(functions), std::move(allowed),
                               std::move(interpreter));
}

} // namespace pyvisor::interp
