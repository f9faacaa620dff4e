#include "pyvisor/runtime.hpp"

#include <csignal>
#include <mutex>
#include <vector>

#include <caf/all.hpp>

#include "facade/runtime_impl.hpp"
#include "facade/supervisor_shared.hpp"
#include "interpreter/timer_relay.hpp"
#include "process/spawn.hpp"
#include "pyvisor/actor_interface.hpp"

namespace pyvisor {

namespace {

struct system_config : caf::actor_system_config {
  explicit system_config(std::size_t threads) {
    // Work stealing polls and sleeps; every message from a non-CAF thread (the I/O thread,
    // blocking callers) then waits for a sleeping worker: measured ~7x slower here.
    set("scheduler.policy", caf::atom("sharing"));
    if (threads > 0)
      set("scheduler.max-threads", threads);
    pyvisor::add_message_types(*this);
    add_error_category(error_category, [](std::uint8_t code, caf::atom_value,
                                          const caf::message& ctx) -> std::string {
      if (ctx.match_elements<error>())
        return "pyvisor::" + ctx.get_as<error>(0).to_string();
      return "pyvisor::" + std::string{to_string(static_cast<errc>(code))};
    });
  }
};

} // namespace

void runtime::impl::log(const log_record& r) {
  if (!opts.log)
    return;
  std::lock_guard<std::mutex> g{log_mu};
  opts.log(r);
}

void runtime::impl::shutdown() {
  std::vector<caf::actor> to_stop;
  std::vector<std::shared_ptr<interp::status>> statuses;
  std::vector<caf::actor> sups;
  {
    std::lock_guard<std::mutex> g{mu};
    if (shut_down)
      return;
    shut_down = true;
    for (auto& addr : supervisors)
      if (auto a = caf::actor_cast<caf::actor>(addr))
        sups.push_back(std::move(a));
    supervisors.clear();
  }
  // Supervisors first (each stops its children in reverse order), so that nothing restarts
  // what the shutdown stops. A supervisor that ended already answers with an error at once.
  if (!sups.empty()) {
    caf::scoped_actor self{*sys};
    for (auto& s : sups)
      self->request(s, caf::infinite, stop_atom::value)
        .receive([](bool) {}, [](const caf::error&) {});
  }
  sups.clear();
  {
    std::lock_guard<std::mutex> g{mu};
    for (auto& [st, addr] : live) {
      if (auto a = caf::actor_cast<caf::actor>(addr))
        to_stop.push_back(std::move(a));
      if (auto s = st.lock())
        statuses.push_back(std::move(s));
    }
    live.clear();
  }
  // An exit message is "stop for good" for supervised and unsupervised interpreters alike.
  for (auto& a : to_stop)
    caf::anon_send_exit(a, caf::exit_reason::user_shutdown);
  to_stop.clear();
  // Exposed actors are kept alive only by the registry once the user's handles are gone:
  // release them first, or waiting for every actor below would wait for them forever.
  hosts->clear();
  // Every interpreter runs its stop sequence (bounded; its timers go through the relay) and
  // is stopped once its process is reaped, which needs the I/O thread: stop that last.
  for (auto& st : statuses)
    st->wait([](interpreter_state s) { return s == interpreter_state::stopped; },
             forever);
  statuses.clear();
  // Every interpreter is stopped: the fork servers' templates go (and no thread of theirs
  // posts to the I/O loop any more).
  forks.shutdown();
  caf::anon_send_exit(timers, caf::exit_reason::user_shutdown);
  timers = nullptr;
  sys->await_all_actors_done();
  loop->stop();
}


runtime::runtime(runtime_options opts) : impl_(std::make_shared<impl>()) {
  // A write to a dead child must be EPIPE, not a process-killing signal. A handler the host
  // installed itself is left alone.
  struct sigaction old{};
  if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL)
    ::signal(SIGPIPE, SIG_IGN);
  process::reserve_low_fds();
  impl_->opts = std::move(opts);
  impl_->loop = std::make_unique<io::io_loop>();
  impl_->cfg = std::make_unique<system_config>(impl_->opts.scheduler_threads);
  impl_->sys = std::make_unique<caf::actor_system>(*impl_->cfg);
  impl_->timers = interp::spawn_timer_relay(*impl_->sys);
}

runtime::~runtime() {
  impl_->shutdown();
}

caf::actor_system& runtime::system() {
  return *impl_->sys;
}

void runtime::expose_function(std::string name, host_function f) {
  impl_->hosts->expose(std::move(name), std::move(f));
}

void runtime::expose_actor(std::string name, caf::actor a) {
  impl_->hosts->expose(std::move(name), std::move(a));
}

void runtime::unexpose(const std::string& name) {
  impl_->hosts->unexpose(name);
}

host_handle runtime::handle_for(const caf::actor& a) {
  return host_handle{impl_->hosts->handle_for(a)};
}

expected<interpreter> runtime::spawn_interpreter(interpreter_options opts) {
  auto shared = impl_->make_interpreter(std::move(opts), caf::actor{});
  if (!shared)
    return std::move(shared).error();
  interpreter handle{*shared};
  if (!(*shared)->opts.sync_start)
    return handle;
  auto ready = handle.wait_ready(forever);
  if (!ready) {
    // Return only once the process is gone: a failed start leaves nothing behind.
    (*shared)->st->wait([](interpreter_state s) { return s == interpreter_state::stopped; },
                        forever);
    return ready.error();
  }
  return handle;
}

expected<supervisor> runtime::supervise(supervisor_spec spec) {
  return impl_->supervise(std::move(spec));
}

} // namespace pyvisor
