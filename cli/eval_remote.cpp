// Remote eval (eval_remote.hpp): the code, --var values and --timeout go to the daemon as the
// body of POST /v1/pools/NAME/eval or /v1/sessions/ID/eval; the answer prints as the local
// eval's would.

#include "eval_remote.hpp"

#include "eval_output.hpp"
#include "gateway/http_errors.hpp"

namespace pyvisor::cli {

int run_remote_eval(const remote_eval_args& a) {
  if (!a.pool.empty() && !a.session.empty()) {
    throw usage_error{"--pool and --session are mutually exclusive"};
  }
  if (a.pool.empty() && a.session.empty()) {
    throw usage_error{"a remote eval needs --pool NAME or --session ID"};
  }
  if (!a.key.empty() && !a.session.empty()) {
    throw usage_error{"--key applies to --pool only (a session is pinned to its worker)"};
  }
  const std::string path =
      a.session.empty() ? "/v1/pools/" + checked_segment(a.pool, "--pool") + "/eval"
                        : "/v1/sessions/" + checked_segment(a.session, "session ID") + "/eval";
  json body = json::object();
  const std::vector<parsed_var> vars = parse_vars(a.code.vars);
  if (!a.code.timeout.empty()) (void)parse_timeout(a.code.timeout);
  const eval_code code = read_eval_code(a.code);
  body["code"] = code.code;
  body["file"] = code.file;
  if (!vars.empty()) {
    json v = json::object();
    for (const parsed_var& pv : vars) v[pv.name] = pv.doc;
    body["vars"] = std::move(v);
  }
  if (!a.key.empty()) body["key"] = a.key;
  if (!a.code.timeout.empty()) body["timeout"] = a.code.timeout;

  client c(a.conn, read_bound_for(a.code.timeout));
  const answer ans = c.post(path, body);
  if (const json* err = ans.error()) return finish_eval(err, {}, a.code.json);
  const auto value = ans.body.find("value");
  if (value == ans.body.end()) {
    const json err = gateway_error_document(
        "bad_answer", c.url() + " answered HTTP " + std::to_string(ans.status) +
                          " without a value (is it a pyvisor daemon?)");
    return finish_eval(&err, {}, a.code.json);
  }
  const std::string line = a.code.raw && value->is_string()
                               ? value->get<std::string>()
                               : dump_json(*value);
  return finish_eval(nullptr, line, a.code.json);
}

code_options add_remote_code_options(CLI::App* cmd, code_args& a) {
  cmd->add_option("--var", a.vars,
                  "bind the Python variable NAME to a JSON value for CODE (repeatable)")
      ->type_name("NAME=JSON")
      ->allow_extra_args(false);
  cmd->add_option("--timeout", a.timeout,
                  "give up on CODE after DURATION, e.g. 250ms, 1.5s, 5s (default: the pool's "
                  "default_timeout)")
      ->type_name("DURATION")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_flag("--json", a.json,
                "report errors as one JSON line on stdout: "
                "{\"error\": {\"code\", \"type\", \"message\", \"traceback\"}}")
      ->disable_flag_override();
  cmd->add_flag("--raw", a.raw,
                "print a str result as it is (no JSON quoting), followed by a newline")
      ->disable_flag_override();
  code_options o;
  o.file = cmd->add_option("-f,--file", a.file, "read the code from FILE instead of CODE")
               ->type_name("FILE")
               ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  o.code = cmd->add_option("CODE", a.code, "Python code, or '-' to read it from stdin");
  return o;
}

} // namespace pyvisor::cli
