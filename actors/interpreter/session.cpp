#include "interpreter/session.hpp"

#include <csignal>
#include <cstring>
#include <sys/wait.h>
#include <utility>

#include <caf/send.hpp>

#include "io/line_splitter.hpp"
#include "protocol/python_log.hpp"

namespace pyvisor::interp {

namespace {

constexpr std::size_t max_log_line = 64 * 1024;
// Python -> host messages being handled at once before the host stops reading the runner's
// output (the runner then blocks in its writes and its cast/send awaits drain).
constexpr std::int64_t host_high_water = 10000;
constexpr std::int64_t host_low_water = 5000;

std::string signal_name(int sig) {
  const char* abbrev = sigabbrev_np(sig);
  return abbrev ? std::string{"SIG"} + abbrev : std::to_string(sig);
}

/// What a death by `sig` means under the process's limits ("" when nothing): SIGXCPU is the
/// cpu limit, SIGXFSZ the file size limit; with a memory limit, a SIGSEGV, SIGBUS or SIGABRT
/// (an allocation that failed where Python could not raise MemoryError) or a SIGKILL is taken
/// as the memory limit. Deaths pyvisor causes itself carry their own reason (exit_reason_).
std::string limit_note(int sig, const process::exit_context& c) {
  if (sig == SIGXCPU)
    return c.cpu_seconds ? ": cpu limit (cpu_seconds " + std::to_string(*c.cpu_seconds) + ")"
                         : ": cpu limit";
  if (sig == SIGXFSZ)
    return c.file_size ? ": file size limit (file_size " + std::to_string(*c.file_size) + ")"
                       : ": file size limit";
  if (c.memory && (sig == SIGSEGV || sig == SIGBUS || sig == SIGABRT || sig == SIGKILL))
    return ": memory limit (likely: it ran with memory " + std::to_string(*c.memory) + ")";
  if (c.cpu_seconds && sig == SIGKILL)  // the hard limit, one second after SIGXCPU
    return ": cpu limit (cpu_seconds " + std::to_string(*c.cpu_seconds) + ")";
  return {};
}

} // namespace

std::shared_ptr<session> session::make(io::io_loop& loop, std::shared_ptr<request_table> table,
                                       caf::actor host, config cfg, owner_events ev) {
  std::shared_ptr<session> s{new session{std::move(table), std::move(host), std::move(cfg),
                                         std::move(ev)}};
  // The connection holds its session until the exit (or spawn_failed) releases it.
  io::connection_events ce;
  ce.frame = [s](std::string_view body, std::shared_ptr<const char[]> owner, std::uint64_t only) {
    if (only != 0)
      return s->on_own_reply(body, std::move(owner), only);
    return s->on_frame(body, std::move(owner)) ? io::frame_verdict::taken : io::frame_verdict::stop;
  };
  ce.violation = [s](errc code, std::string what) { s->violation(code, std::move(what)); };
  ce.line = [s](log_source src, std::string_view line) { s->on_line(src, line); };
  ce.drained = [t = s->table_] { t->on_drained(); };
  ce.write_failed = [s](int err, bool exiting) { s->on_write_failed(err, exiting); };
  ce.exited = [s](int status) { s->on_exit(status); };
  s->conn_ = std::make_shared<io::connection>(loop, s->cfg_.limits.max_frame_bytes, s->cfg_.marks,
                                              std::move(ce));
  return s;
}

session::session(std::shared_ptr<request_table> table, caf::actor host, config cfg,
                 owner_events ev)
  : table_(std::move(table)), host_(std::move(host)), cfg_(std::move(cfg)), ev_(std::move(ev)),
    label_(cfg_.label) {
}

void session::attach(process::spawned_process p) {
  {
    std::lock_guard<std::mutex> g{mu_};
    if (label_.empty())
      label_ = "python-" + std::to_string(p.python());
  }
  exit_ctx_ = p.context;
  std::optional<error> unmapped;
  if (p.shm >= 0) {
    auto area = io::shared_area::map(std::exchange(p.shm, -1), p.shm_bytes, cfg_.shm_keep);
    if (area)
      area_ = std::move(*area);
    else
      unmapped = area.error();
  }
  conn_->attach(p);
  table_->attach(conn_);
  if (unmapped)  // the runner would send what the host cannot read
    violation(errc::spawn_failed, unmapped->message);
}

void session::spawn_failed() {
  // Never attached: no exit will come to break the session <-> connection cycle.
  conn_->release_events();
}

std::string session::label() const {
  std::lock_guard<std::mutex> g{mu_};
  return label_;
}

void session::set_exit_reason(error e) {
  std::lock_guard<std::mutex> g{mu_};
  if (!exit_reason_)
    exit_reason_ = std::move(e);
}

// ---- frames ----------------------------------------------------------------------------------

io::frame_verdict session::on_own_reply(std::string_view body, std::shared_ptr<const char[]> owner,
                                        std::uint64_t id) {
  // On the thread that waits for reply `id`: that reply, through the pipe, is handled here as
  // on the I/O thread; anything else (other frames, shared-memory replies, malformed frames:
  // the I/O thread reports those) goes to the I/O thread. Its head is read first, so other
  // frames are not decoded twice: [1 (response), id, ...] as fixarray 4, fixint, uint.
  if (!protocol::is_response_to(body, id))
    return io::frame_verdict::not_here;
  auto decoded = protocol::decode(body, cfg_.limits, std::move(owner));
  auto m = std::get_if<protocol::message>(&decoded);
  if (m == nullptr || m->kind != protocol::kind::response || m->id != id)
    return io::frame_verdict::not_here;
  auto ok = protocol::map_get(m->payload, "ok");
  if (ok != nullptr && ok->type == msgpack::type::EXT &&
      (ok->via.ext.type() == protocol::ext_shared_bytes ||
       ok->via.ext.type() == protocol::ext_shared_ndarray))
    return io::frame_verdict::not_here;
  table_->count_caller_read();
  table_->on_response(*m);
  return io::frame_verdict::taken;
}

// I/O thread from here on.

bool session::on_frame(std::string_view body, std::shared_ptr<const char[]> owner) {
  auto decoded = protocol::decode(body, cfg_.limits, std::move(owner));
  if (auto err = std::get_if<std::string>(&decoded)) {
    violation(errc::protocol_error, "malformed frame from the runner: " + *err);
    return false;
  }
  auto& m = std::get<protocol::message>(decoded);
  using protocol::kind;
  if (m.kind == kind::response) {
    auto ok = const_cast<msgpack::object*>(protocol::map_get(m.payload, "ok"));
    if (ok != nullptr && ok->type == msgpack::type::EXT &&
        (ok->via.ext.type() == protocol::ext_shared_bytes ||
         ok->via.ext.type() == protocol::ext_shared_ndarray)) {
      auto bad = shm_on_
                   ? area_->resolve(m, *ok, body.size(), cfg_.limits.max_frame_bytes,
                                    cfg_.shm_copy)
                   : std::optional<std::string>{"without shared memory"};
      if (bad) {
        violation(errc::protocol_error, "the runner sent a reply by shared memory: " + *bad);
        return false;
      }
    }
    table_->on_response(m);
    return true;
  }
  if ((m.kind == kind::request && m.op == "host_call") ||
      (m.kind == kind::notification && (m.op == "host_cast" || m.op == "host_send"))) {
    dispatch_host(m);
    return true;
  }
  if (m.kind == kind::notification && m.op == "log") {
    auto stream = protocol::map_string(m.payload, "stream");
    auto line = protocol::map_get(m.payload, "line");
    std::uint64_t id = 0;
    if (auto v = protocol::map_get(m.payload, "id"); v && v->type == msgpack::type::POSITIVE_INTEGER)
      id = v->via.u64;
    if (line != nullptr && line->type == msgpack::type::STR)
      on_line(stream == "stderr" ? log_source::python_stderr : log_source::python_stdout,
              std::string_view{line->via.str.ptr, line->via.str.size}, id);
    return true;
  }
  if (m.kind == kind::notification && m.op == "logging") {
    on_python_log(m);
    return true;
  }
  if (m.kind == kind::notification && m.op == "ready") {
    if (ready_seen_) {
      violation(errc::protocol_error, "second 'ready' notification");
      return false;
    }
    ready_seen_ = true;
    ready_info info;
    info.python_version = protocol::map_string(m.payload, "python");
    info.executable = protocol::map_string(m.payload, "executable");
    info.codec = protocol::map_string(m.payload, "codec");
    if (auto v = protocol::map_get(m.payload, "pid"); v && v->type == msgpack::type::POSITIVE_INTEGER)
      info.python_pid = static_cast<int>(v->via.u64);
    if (auto v = protocol::map_get(m.payload, "protocol");
        v && v->type == msgpack::type::POSITIVE_INTEGER)
      info.protocol = static_cast<int>(v->via.u64);
    if (auto v = protocol::map_get(m.payload, "shm"); v && v->type == msgpack::type::POSITIVE_INTEGER)
      info.shm = v->via.u64;
    if (info.protocol != protocol::version) {
      violation(errc::protocol_error, "runner speaks protocol " + std::to_string(info.protocol) +
                                        ", host speaks " + std::to_string(protocol::version));
      return false;
    }
    // The runner mapped the areas it was given: requests may use them from now on.
    if (area_ && info.shm == area_->bytes()) {
      shm_on_ = true;
      table_->use_area(area_);
    }
    if (ev_.ready)
      ev_.ready(std::move(info));
    return true;
  }
  // Unknown notifications are ignored for forward compatibility; unknown requests are
  // answered with an error so the runner's caller does not wait forever.
  if (m.kind == kind::request)
    respond(protocol::encode_error_response(m.id, m.op, "not_exposed", "HostError",
                                            "the host does not serve '" + m.op + "'"));
  return true;
}

void session::dispatch_host(protocol::message& m) {
  host_message h;
  h.kind = m.op == "host_call" ? host_message::call
                               : (m.op == "host_cast" ? host_message::cast : host_message::send);
  h.rid = m.id;
  if (h.kind == host_message::send) {
    auto target = protocol::map_get(m.payload, "target");
    auto v = protocol::map_get(m.payload, "value");
    if (target && target->type == msgpack::type::STR)
      h.name.assign(target->via.str.ptr, target->via.str.size);
    else if (target)
      h.target = value{m.owner(), *target, m.zone.get()};
    h.args.push_back(v ? value{m.owner(), *v, m.zone.get()} : value{});
  } else {
    h.name = protocol::map_string(m.payload, "name");
    if (auto a = protocol::map_get(m.payload, "args"); a && a->type == msgpack::type::ARRAY)
      for (std::uint32_t i = 0; i < a->via.array.size; ++i)
        h.args.emplace_back(m.owner(), a->via.array.ptr[i], m.zone.get());
  }
  // Flow control: while too many host messages are being handled, stop reading the runner;
  // its writes then block and its cast/send/call awaits the drain (bounded memory both ways).
  if (host_outstanding_.fetch_add(1) + 1 >= host_high_water)
    conn_->pause_reading();  // idempotent
  if (!host_) {
    host_done();
    return;
  }
  h.from = shared_from_this();
  caf::anon_send(host_, std::move(h));
}

void session::host_done() {
  table_->count_host_message();
  auto left = host_outstanding_.fetch_sub(1) - 1;
  if (left == host_low_water)
    conn_->resume_reading();  // on the I/O thread; a pause that was never taken is a no-op
}

// ---- log lines (I/O thread) ------------------------------------------------------------------

void session::on_line(log_source src, std::string_view line, std::uint64_t request_id) {
  if (src == log_source::python_stderr && !ready_seen_) {
    // Until the runner is up, stderr is where a broken start explains itself.
    recent_stderr_.emplace_back(line.substr(0, 500));
    if (recent_stderr_.size() > 8)
      recent_stderr_.pop_front();
  }
  if (!cfg_.log)
    return;
  auto lbl = label();
  auto pid = conn_->pid();
  // Lines the runner sends in log frames are not cut by the reader: cap every line here.
  io::line_splitter::emit_capped(line, max_log_line, [&](std::string_view piece) {
    cfg_.log(log_record{lbl, pid, src, piece, request_id});
  });
}

void session::on_python_log(const protocol::message& m) {
  if (!cfg_.log)
    return;
  auto rec = protocol::parse_python_log(m.payload);
  if (!rec)
    return;  // malformed: ignored like a `log` frame without a line
  auto lbl = label();
  log_record r{lbl, conn_->pid(), log_source::python_logging, rec->message, rec->request_id};
  r.level = rec->level;
  r.level_name = rec->level_name;
  r.logger = rec->logger;
  r.exception = rec->exception;
  r.created = rec->created;
  cfg_.log(r);
}

void session::log_runtime(const std::string& line, std::uint64_t request_id) {
  if (cfg_.log)
    cfg_.log(log_record{label(), conn_->pid(), log_source::runtime, line, request_id});
}

// ---- failures and the exit (I/O thread) -------------------------------------------------------

void session::violation(errc code, std::string what) {
  log_runtime(what + "; killing the interpreter");
  set_exit_reason(make_error(code, std::move(what)));
  conn_->stop_reading();  // nothing after a violation can be trusted
  conn_->signal_group(SIGKILL);
}

void session::on_write_failed(int err, bool exiting) {
  if (exiting)
    return;  // the exit answers every request with the exit status
  auto e = make_error(errc::protocol_error,
                      "cannot write to the Python process " + std::to_string(conn_->pid()) +
                        ": " + std::strerror(err) +
                        (err == EPIPE ? " (it closed its request pipe, fd 3)" : "") +
                        "; killing the interpreter");
  log_runtime(e.message);
  set_exit_reason(e);
  table_->connection_lost(e, /*keep_queued=*/true);
  conn_->signal_group(SIGKILL);
}

void session::on_exit(int status) {
  exit_info info;
  std::string what;
  auto pid = std::to_string(conn_->pid());
  // In a bwrap sandbox the reaped process is bwrap, which exits with 128 + N when the process
  // it ran was killed by signal N.
  int code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  if (exit_ctx_.sandboxed && code > 128 && code < 128 + NSIG)
    info.signal = code - 128;
  else if (WIFSIGNALED(status))
    info.signal = WTERMSIG(status);
  std::string note;  // only when nothing else explains the death
  if (info.signal != 0) {
    what = "Python process " + pid + " was killed by signal " + std::to_string(info.signal) +
           " (" + signal_name(info.signal) + ")";
    note = limit_note(info.signal, exit_ctx_);
  } else {
    info.code = WEXITSTATUS(status);
    what = "Python process " + pid + " exited with code " + std::to_string(info.code);
  }
  {
    std::lock_guard<std::mutex> g{mu_};
    if (exit_reason_)
      info.reason = *exit_reason_;
    else if (stopping_.load())
      info.reason = make_error(errc::interpreter_down,
                               "interpreter '" + label_ + "' was stopped (" + what + ")");
    else
      info.reason = make_error(errc::interpreter_exited, what + note);
  }
  if (!ready_seen_ && !recent_stderr_.empty()) {
    info.reason.message += " before it was ready; its stderr ended with:";
    for (auto& l : recent_stderr_)
      info.reason.message += "\n  " + l;
  }
  // Requests sent to this process get its end; queued ones wait for the owner's decision
  // (the next process, or refuse()).
  table_->connection_lost(info.reason, /*keep_queued=*/true);
  auto ev = std::move(ev_);
  ev_ = owner_events{};
  if (ev.exited)
    ev.exited(std::move(info));
}

} // namespace pyvisor::interp
