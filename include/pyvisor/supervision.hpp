#pragma once

/// Supervision trees with OTP semantics (Erlang/OTP `supervisor`), plus restart backoff.
/// Types shared by the supervisor actor, the interpreters it supervises and the C++ facade
/// (pyvisor/supervisor.hpp). All durations follow the convention of interpreter_options.hpp
/// (`forever` = no bound).

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <caf/atom.hpp>

#include "pyvisor/error.hpp"
#include "pyvisor/interpreter_options.hpp"

namespace pyvisor {

/// Which children restart when one ends (OTP).
enum class restart_strategy : std::uint8_t {
  one_for_one,   ///< only the child that ended
  one_for_all,   ///< every child: the others are stopped (reverse order), all restart in order
  rest_for_one,  ///< the child that ended and every child started after it
};

/// When a child is restarted (OTP).
enum class restart_type : std::uint8_t {
  permanent,  ///< always
  transient,  ///< only after an abnormal end (not `normal` and not `shutdown`)
  temporary,  ///< never (and its spec is forgotten once it ended)
};

/// How a child is stopped: `brutal_kill`, or ask it to stop and kill it after `grace`
/// (`forever`: wait as long as it takes; the OTP default for supervisors).
struct shutdown_policy {
  bool brutal_kill = false;
  std::chrono::milliseconds grace = 5s;
};

/// Delays between restarts (beyond OTP; Akka's restartWithBackoff, k8s CrashLoopBackOff). The
/// first restart after a quiet spell is immediate, then `base` doubling up to `cap`, each with
/// +/- `jitter` (a fraction); the sequence starts over once the child stayed up `reset_after`.
struct backoff_policy {
  std::chrono::milliseconds base = 100ms;
  std::chrono::milliseconds cap = 30s;
  double jitter = 0.2;
  std::chrono::milliseconds reset_after = 60s;
};

/// How a child ended, as the supervisor sees it.
enum class exit_kind : std::uint8_t {
  normal,        ///< it ended by itself, cleanly (exit code 0)
  shutdown,      ///< it was stopped (by its supervisor, or by a stop() of its own)
  crash,         ///< anything else: a signal, a non-zero code, a protocol violation, a kill
  start_failed,  ///< it never became ready (spawn error, init_failed, init_timeout): a crash
};

std::string_view to_string(exit_kind k) noexcept;
std::ostream& operator<<(std::ostream& os, exit_kind k);

/// What a child reports when its process (or, for a nested supervisor, the supervisor) ended.
struct exit_report {
  exit_kind kind = exit_kind::crash;
  int code = -1;   ///< exit code, or -1
  int signal = 0;  ///< terminating signal, or 0
  error reason;    ///< the error requests sent to it were answered with
};

/// A lifecycle event of a supervision tree, to the runtime's log sink (as a `runtime` line) and
/// to every subscriber (supervisor::subscribe, or (subscribe_atom, actor) through the actor
/// interface, which then receives (supervision_event_atom, supervision_event)).
struct supervision_event {
  enum kind_t : std::uint8_t {
    started,     ///< a child is up (pid set; for interpreters: ready)
    exited,      ///< a child ended (report set)
    restarting,  ///< a child will be started again after `delay`
    gave_up,     ///< intensity exceeded: the supervisor stops its children and itself (report:
                 ///< the last end, whose reason carries e.g. the init script's traceback)
    stopped,     ///< the supervisor stopped
  } kind = started;
  std::string supervisor;  ///< the supervisor's name
  std::string child;       ///< the child's id (empty for the supervisor's own events)
  int pid = 0;
  exit_report report;
  std::chrono::milliseconds delay{0};

  /// One line, e.g. "supervisor 'app': child 'py' exited (crash: interpreter_exited: ...)".
  std::string to_string() const;
};

/// The state of one child (supervisor::which_children).
struct child_info {
  enum state_t : std::uint8_t { starting, running, restarting, stopped } state = starting;
  std::string id;
  bool is_supervisor = false;
  int pid = 0;
  std::uint64_t restarts = 0;
  std::optional<exit_report> last_exit;
  std::chrono::milliseconds uptime{0};  ///< since it was last up; 0 when not running
};

std::string_view to_string(child_info::state_t s) noexcept;

/// Counts of supervisor::count_children (OTP count_children).
struct child_counts {
  std::size_t specs = 0;        ///< children known
  std::size_t active = 0;       ///< running
  std::size_t supervisors = 0;  ///< children that are supervisors or pools
  std::size_t workers = 0;      ///< children that are interpreters
};

struct supervisor_spec;
struct pool_options;

/// One child of a supervisor: an interpreter (its handle survives restarts), a nested
/// supervisor, or a pool (pyvisor/pool_options.hpp; its handle and queue survive restarts too:
/// it is up once `min_ready` workers are ready, it never ends by itself, and a start whose
/// circuit breaker opens first counts as a failed start).
struct child_spec {
  std::string id;                              ///< unique among its siblings
  std::optional<interpreter_options> interpreter;  ///< set for an interpreter child
  std::shared_ptr<supervisor_spec> supervisor;  ///< set for a nested supervisor
  std::shared_ptr<pool_options> pool;           ///< set for a pool (its name: the id)
  restart_type restart = restart_type::permanent;
  /// Default: 5 s grace for interpreters (then their own stop sequence's SIGTERM/SIGKILL),
  /// `forever` for supervisors and pools (OTP).
  std::optional<shutdown_policy> shutdown;
};

/// A supervisor: its children start in order and stop in reverse order.
struct supervisor_spec {
  std::string name = "supervisor";
  restart_strategy strategy = restart_strategy::one_for_one;
  /// More than `intensity` restarts within `period` and the supervisor gives up: it stops its
  /// children and itself, and its parent sees it end (OTP default: 1 in 5 s).
  int intensity = 1;
  std::chrono::milliseconds period = 5s;
  backoff_policy backoff;
  std::vector<child_spec> children;
  /// Heartbeat of every interpreter child unless its options set one (off: interval forever).
  std::optional<heartbeat_policy> heartbeat;
};

/// The actor interface of a supervisor (supervisor::actor()), mirroring the blocking facade:
///
/// | request                                   | reply                                        |
/// |-------------------------------------------|----------------------------------------------|
/// | (start_child_atom, child_spec)            | bool true once it is up, or the error        |
/// | (terminate_child_atom, std::string id)    | bool true once it is stopped, or the error   |
/// | (restart_child_atom, std::string id)      | bool true once it is up, or the error        |
/// | (delete_child_atom, std::string id)       | bool true, or the error (running, unknown)   |
/// | (which_children_atom)                     | std::vector<child_info>                      |
/// | (count_children_atom)                     | child_counts                                 |
/// | (subscribe_atom, caf::actor)              | nothing; the actor then gets (supervision_event_atom, supervision_event) |
/// | (stop_atom)                               | bool true once every child stopped           |
using start_child_atom = caf::atom_constant<caf::atom("s_start")>;
using terminate_child_atom = caf::atom_constant<caf::atom("s_term")>;
using restart_child_atom = caf::atom_constant<caf::atom("s_restart")>;
using delete_child_atom = caf::atom_constant<caf::atom("s_delete")>;
using which_children_atom = caf::atom_constant<caf::atom("s_which")>;
using count_children_atom = caf::atom_constant<caf::atom("s_count")>;
using subscribe_atom = caf::atom_constant<caf::atom("s_sub")>;
using supervision_event_atom = caf::atom_constant<caf::atom("s_event")>;

} // namespace pyvisor
