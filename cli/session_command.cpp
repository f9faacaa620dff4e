// `pyvisor session new|eval|show|rm`: the daemon's sessions (docs/http.md "Sessions"), an env
// on one worker of a pool whose names stay from one eval to the next.

#include <cstdio>
#include <memory>
#include <string>
#include <vector>

#include "client.hpp"
#include "commands.hpp"
#include "eval_input.hpp"
#include "eval_output.hpp"
#include "eval_remote.hpp"
#include "gateway/http_errors.hpp"
#include "pyvisor/config.hpp"

namespace pyvisor::cli {
namespace {

using namespace std::chrono_literals;

constexpr std::string_view session_footer =
    R"(A session is an env on one worker of a pool of the daemon (`pyvisor serve`): what one eval
binds is there for the next, until it is removed, idle past its idle TTL, past its maximum
lifetime, or lost with its worker (unless --durable). Every command takes --connect URL
(default: $PYVISOR_URL, else http://127.0.0.1:4270) and --token-file FILE ($PYVISOR_TOKEN).

exit status (every session command; `session eval` as `pyvisor eval`, SystemExit included):
  0  success
  1  error: the daemon cannot be reached, refused the request (401, 403, 404 no such pool or
     session, 410 session_gone: the session ended, 429, ...), or the code raised (for `new`:
     the --init code; no session is made)
  2  usage error)";

struct new_args {
  connect_args conn;
  std::string pool;
  bool durable = false;
  std::string init;
  std::vector<std::string> vars;
  std::string key;
  std::string idle_ttl;
  std::string max_lifetime;
  std::string timeout;
  bool json = false;
};

struct id_args {
  connect_args conn;
  std::string id;
  bool json = false;
};

/// A duration option, checked here (the daemon would refuse it too, later).
void check_duration(const std::string& text, const char* option) {
  if (text.empty()) return;
  const auto d = pyvisor::parse_duration(text);
  if (!d || d->count() < 1) {
    throw usage_error{std::string(option) + ": invalid DURATION '" + text +
                      "' (e.g. 250ms, 30s, 5m, 1h, or forever; at least 1ms)"};
  }
}

int run_new(const new_args& a) {
  json body = json::object();
  if (a.durable) body["durable"] = true;
  if (!a.init.empty()) {
    if (!is_valid_utf8(a.init)) throw usage_error{"--init: the code is not valid UTF-8"};
    body["init"] = a.init;
  }
  const std::vector<parsed_var> vars = parse_vars(a.vars);
  if (!vars.empty()) {
    json v = json::object();
    for (const parsed_var& pv : vars) v[pv.name] = pv.doc;
    body["vars"] = std::move(v);
  }
  if (!a.key.empty()) body["key"] = a.key;
  check_duration(a.idle_ttl, "--idle-ttl");
  check_duration(a.max_lifetime, "--max-lifetime");
  check_duration(a.timeout, "--timeout");
  if (!a.idle_ttl.empty()) body["idle_ttl"] = a.idle_ttl;
  if (!a.max_lifetime.empty()) body["max_lifetime"] = a.max_lifetime;
  if (!a.timeout.empty()) body["timeout"] = a.timeout;
  const std::string path = "/v1/pools/" + checked_segment(a.pool, "--pool") + "/sessions";
  client c(a.conn, read_bound_for(a.timeout));
  const answer ans = c.post(path, body);
  if (const json* err = ans.error()) {
    print_error(*err, a.json);
    return exit_error;
  }
  const auto id = ans.body.find("id");
  if (id == ans.body.end() || !id->is_string()) {
    print_error(gateway_error_document("bad_answer", c.url() + " answered without a session id"),
                a.json);
    return exit_error;
  }
  return write_stdout((a.json ? dump_json(ans.body) : id->get<std::string>()) + "\n")
             ? exit_ok
             : exit_error;
}

/// `session show`'s text: a "name: value" line per member, durations in seconds.
std::string render_session(const json& doc) {
  std::string out;
  for (const auto& [k, v] : doc.items()) {
    out += k + ": ";
    if (v.is_string()) {
      out += v.get<std::string>();
    } else if (v.is_number() && (k == "idle_ttl" || k == "max_lifetime" || k == "expires_in")) {
      char buf[64];
      std::snprintf(buf, sizeof buf, "%.1fs", v.get<double>());
      out += buf;
    } else {
      out += dump_json(v);
    }
    out += '\n';
  }
  return out;
}

int run_show(const id_args& a) {
  const std::string path = "/v1/sessions/" + checked_segment(a.id, "session ID");
  client c(a.conn, 30s);
  const answer ans = c.get(path);
  if (const json* err = ans.error()) {
    print_error(*err, a.json);
    return exit_error;
  }
  return write_stdout(a.json ? dump_json(ans.body) + "\n" : render_session(ans.body)) ? exit_ok
                                                                                      : exit_error;
}

int run_rm(const id_args& a) {
  const std::string path = "/v1/sessions/" + checked_segment(a.id, "session ID");
  client c(a.conn, 30s);
  const answer ans = c.del(path);
  if (const json* err = ans.error()) {
    print_error(*err, a.json);
    return exit_error;
  }
  return exit_ok;
}

CLI::App* add_new(CLI::App* session, new_args& a) {
  CLI::App* cmd = session->add_subcommand("new", "make a session on a pool; prints its id");
  cmd->footer(std::string(session_footer));
  cmd->add_option("--pool", a.pool, "the pool")->type_name("NAME")->required();
  cmd->add_flag("--durable", a.durable,
                "survive the worker's crash (init and successful evals are replayed)")
      ->disable_flag_override();
  cmd->add_option("--init", a.init, "code run once in the new session (it raises: no session)")
      ->type_name("CODE");
  cmd->add_option("--var", a.vars, "bind NAME to a JSON value in the session (repeatable)")
      ->type_name("NAME=JSON")
      ->allow_extra_args(false);
  cmd->add_option("--key", a.key, "place it on the worker that owns K (key_affinity pools)")
      ->type_name("K");
  cmd->add_option("--idle-ttl", a.idle_ttl,
                  "end it after DURATION unused (default: [gateway] session_idle_ttl)")
      ->type_name("DURATION");
  cmd->add_option("--max-lifetime", a.max_lifetime,
                  "end it DURATION after it was made (default: [gateway] session_max_lifetime)")
      ->type_name("DURATION");
  cmd->add_option("--timeout", a.timeout, "bound on making it and running --init")
      ->type_name("DURATION");
  cmd->add_flag("--json", a.json,
                "print the whole session document (or an error object) as JSON")
      ->disable_flag_override();
  add_connect_options(cmd, a.conn);
  return cmd;
}

CLI::App* add_id_command(CLI::App* session, const char* name, const char* help, id_args& a) {
  CLI::App* cmd = session->add_subcommand(name, help);
  cmd->footer(std::string(session_footer));
  cmd->add_option("ID", a.id, "the session's id (from `pyvisor session new`)")->required();
  cmd->add_flag("--json", a.json,
                std::string(name) == "show" ? "print the session document (or an error) as JSON"
                                            : "print an error as a JSON object on stdout")
      ->disable_flag_override();
  add_connect_options(cmd, a.conn);
  return cmd;
}

} // namespace

command_runner add_session_command(CLI::App& app) {
  CLI::App* session = app.add_subcommand("session", "make, use, show and remove the daemon's sessions");
  session->require_subcommand(1);
  session->footer(std::string(session_footer));

  auto made = std::make_shared<new_args>();
  CLI::App* new_cmd = add_new(session, *made);

  auto eval = std::make_shared<remote_eval_args>();
  CLI::App* eval_cmd = session->add_subcommand(
      "eval", "run code in a session (as `pyvisor eval --session ID`)");
  eval_cmd->footer(std::string(session_footer));
  eval_cmd->add_option("ID", eval->session, "the session's id")->required();
  const code_options code = add_remote_code_options(eval_cmd, eval->code);
  add_connect_options(eval_cmd, eval->conn);

  auto shown = std::make_shared<id_args>();
  CLI::App* show_cmd = add_id_command(session, "show", "print a session (pool, TTLs, expiry)", *shown);
  auto removed = std::make_shared<id_args>();
  CLI::App* rm_cmd = add_id_command(session, "rm", "end a session", *removed);

  return [=] {
    if (new_cmd->parsed()) return run_new(*made);
    if (eval_cmd->parsed()) {
      code.note_given(eval->code);
      return run_remote_eval(*eval);
    }
    if (show_cmd->parsed()) return run_show(*shown);
    if (rm_cmd->parsed()) return run_rm(*removed);
    throw usage_error{"missing session command (new, eval, show or rm)"};
  };
}

} // namespace pyvisor::cli
