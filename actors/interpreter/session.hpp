#pragma once

#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <caf/actor.hpp>
#include <caf/allowed_unsafe_message_type.hpp>

#include "core/limits.hpp"
#include "interpreter/request_table.hpp"
#include "io/connection.hpp"
#include "pyvisor/log_record.hpp"
#include "io/shared_area.hpp"
#include "pyvisor/value.hpp"

namespace pyvisor::interp {

/// What the runner said in its `ready` notification.
struct ready_info {
  std::string python_version;
  std::string executable;
  std::string codec;
  int python_pid = 0;
  int protocol = 0;
  std::uint64_t shm = 0;  ///< the size of each shared-memory area the runner mapped (0: none)
};

/// How a process ended (after it was reaped).
struct exit_info {
  int code = -1;    ///< exit code, or -1 when killed by a signal
  int signal = 0;   ///< terminating signal, or 0
  pyvisor::error reason;  ///< what requests sent to it were answered with
};

class session;

/// A call, cast or send from Python to the host (docs/protocol.md), for the host actor.
struct host_message {
  enum kind_t : std::uint8_t { call, cast, send } kind = call;
  std::uint64_t rid = 0;     ///< the runner's request id (calls only)
  std::string name;          ///< function name, or the send target's name
  std::vector<value> args;   ///< call/cast arguments; for send: the one value
  std::optional<value> target;  ///< send: an opaque handle target instead of a name
  std::shared_ptr<session> from;  ///< where the answer goes (the process that asked)
};

/// One Python process of an interpreter, seen from the interpreter layer (the protocol half of
/// asyncio's transport/protocol split): it decodes the frames its connection reports and
/// routes them (responses to the request table, host messages to the host actor, log lines to
/// the sink, `ready` and the exit to the interpreter actor), and it turns violations and write
/// failures into a killed process with a reason. It decides nothing about the lifecycle.
class session : public std::enable_shared_from_this<session> {
public:
  struct owner_events {  ///< I/O thread
    std::function<void(ready_info)> ready;
    std::function<void(exit_info)> exited;
  };

  struct config {
    core::limits limits;
    io::connection::watermarks marks;
    std::string label;
    log_sink log;
    std::size_t shm_keep = 0;  ///< shared memory: io::shared_area's `keep`
    bool shm_copy = false;     ///< shared memory: results are copied (untrusted processes)
  };

  static std::shared_ptr<session> make(io::io_loop& loop, std::shared_ptr<request_table> table,
                                       caf::actor host, config cfg, owner_events ev);

  /// Takes over the spawned process and attaches it to the request table. I/O thread.
  void attach(process::spawned_process p);
  /// The spawn failed: nothing will ever be reported. I/O thread.
  void spawn_failed();

  io::connection& conn() { return *conn_; }

  /// Marks the coming exit as caused by `e` (a violation, an init timeout, a kill), so the
  /// requests sent to the process are answered with it instead of interpreter_exited.
  void set_exit_reason(error e);
  /// A stop was requested: the exit is reported as interpreter_down.
  void set_stopping() { stopping_.store(true); }

  /// Answers a runner's host_call (ahead of everything queued).
  void respond(std::string frame) { conn_->write(std::move(frame)); }
  /// A host message is finished (flow control of Python -> host).
  void host_done();

  int pid() const noexcept { return conn_->pid(); }
  std::string label() const;
  void log_runtime(const std::string& line, std::uint64_t request_id = 0);

private:
  session(std::shared_ptr<request_table> table, caf::actor host, config cfg, owner_events ev);
  bool on_frame(std::string_view body, std::shared_ptr<const char[]> owner);
  io::frame_verdict on_own_reply(std::string_view body, std::shared_ptr<const char[]> owner,
                                 std::uint64_t id);
  void dispatch_host(protocol::message& m);
  void on_line(log_source src, std::string_view line, std::uint64_t request_id = 0);
  void on_python_log(const protocol::message& m);  // a `logging` record, to the sink
  void violation(errc code, std::string what);
  void on_write_failed(int err, bool exiting);
  void on_exit(int status);

  std::shared_ptr<request_table> table_;
  caf::actor host_;
  config cfg_;
  owner_events ev_;
  std::shared_ptr<io::connection> conn_;

  mutable std::mutex mu_;
  std::optional<error> exit_reason_;  // guarded by mu_
  std::string label_;                 // guarded by mu_
  std::atomic<bool> stopping_{false};

  // I/O thread only.
  process::exit_context exit_ctx_;         // limits and sandbox, for the exit reason
  std::deque<std::string> recent_stderr_;  // last lines, quoted when the start fails
  bool ready_seen_ = false;
  std::shared_ptr<io::shared_area> area_;  // this process's shared memory (from its spawn)
  bool shm_on_ = false;  // the runner said it mapped area_: replies may use it
  std::atomic<std::int64_t> host_outstanding_{0};
};

} // namespace pyvisor::interp

// Internal messages between the actors of one interpreter in one process: they carry shared
// pointers, so they are never serialized (the public messages are, actor_interface.hpp).
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::host_message)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::ready_info)
CAF_ALLOW_UNSAFE_MESSAGE_TYPE(pyvisor::interp::exit_info)
