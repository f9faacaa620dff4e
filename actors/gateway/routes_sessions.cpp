// Sessions (docs/http.md): POST /v1/pools/NAME/sessions makes an env pinned to one worker;
// /v1/sessions/ID/eval|call use it; GET shows it, PATCH extends its TTLs, DELETE ends it.
// Unknown ids are 404; ended ones (deleted, expired, lost with their worker, pool reloaded) 410.
#include <httplib.h>

#include "gateway/http_errors.hpp"
#include "gateway/http_gateway.hpp"
#include "gateway/request_body.hpp"
#include "gateway/route_util.hpp"

namespace pyvisor::gateway {

namespace {

std::string iso8601(std::chrono::system_clock::time_point t) {
  const std::time_t tt = std::chrono::system_clock::to_time_t(t);
  std::tm tm{};
  gmtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

double seconds(std::chrono::milliseconds d) {
  return static_cast<double>(d.count()) / 1000.0;
}

json session_doc(const session& s, session_clock::time_point last_used,
                 std::chrono::milliseconds idle, std::chrono::milliseconds life) {
  const auto now = session_clock::now();
  const auto expires = session_table::expiry(s.created, last_used, idle, life);
  json d = json::object();
  d["id"] = s.id;
  d["pool"] = s.pool;
  d["durable"] = s.durable;
  d["created"] = iso8601(s.created_wall);
  d["idle_ttl"] = seconds(idle);
  d["max_lifetime"] = seconds(life);
  d["expires_in"] = std::max(0.0, std::chrono::duration<double>(expires - now).count());
  return d;
}

} // namespace

/// The session of the request's id (404/410/401/403 answered otherwise).
static session_table::lookup_result find_session(session_table& table, const token_table& tokens,
                                                const httplib::Request& req,
                                                httplib::Response& res, bool touch) {
  const std::string id = req.matches[1];
  session_table::lookup_result r = table.use(id, touch);
  const std::string auth = req.get_header_value("Authorization");
  if (tokens.enabled() && tokens.authenticate(auth) == nullptr) {
    res.set_header("WWW-Authenticate", "Bearer");
    send_error(res, 401, "unauthorized", "a valid 'Authorization: Bearer TOKEN' is required");
    return {};
  }
  if (!r.found) {
    if (r.gone)
      send_error(res, 410, "session_gone", "session '" + id + "' ended: " + r.reason);
    else
      send_error(res, 404, "not_found", "no session '" + id + "'");
    return r;
  }
  if (tokens.check_pool(auth, r.found->pool, r.found->tenant) != token_table::verdict::allowed) {
    send_error(res, 403, "forbidden", "this token may not use pool '" + r.found->pool + "'");
    return {};
  }
  return r;
}

void http_gateway::session_create(const httplib::Request& req, httplib::Response& res) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string name = req.matches[1];
  auto routes = hooks_.routes();
  const pool_route* route = authorized_pool(req, res, *routes, name);
  if (route == nullptr)
    return;
  auto doc = read_json_body(req, res, true);
  if (!doc)
    return;
  auto body = parse_session_body(*doc);
  if (!body)
    return send_error(res, 400, "bad_request", body.error().message);
  if (sessions_.size() >= settings_.max_sessions)
    return send_error(res, 429, "too_many_sessions",
                      "gateway.max_sessions (" + std::to_string(settings_.max_sessions) +
                        ") sessions are open: end one (DELETE) first");
  env_options eo;
  eo.durable = body->durable;
  eo.key = body->key;
  eo.vars = body->vars;
  eo.timeout = body->timeout;
  pyvisor::pool pool = route->pool;
  auto made = pool.make_env(eo);
  auto observe = [&](std::string_view code) {
    metrics_.observe(name, "session_new", code, std::chrono::steady_clock::now() - t0);
  };
  if (!made) {
    observe(to_string(made.error().code));
    return send_json(res, http_status_of(made.error().code), error_document(made.error()));
  }
  if (!body->init.empty()) {
    eval_options o;
    o.timeout = body->timeout;
    o.file = "<session init>";
    o.replay = body->durable;
    auto r = made->eval(body->init, {}, o);
    if (!r) {
      made->destroy();
      observe(to_string(r.error().code));
      // The init code failed: no session; the error says why (a 200-class completed call is
      // not a made session, so 422).
      const int st = http_status_of(r.error().code);
      return send_json(res, st == 200 ? 422 : st, error_document(r.error()));
    }
  }
  const auto idle = body->idle_ttl.value_or(settings_.session_idle_ttl);
  const auto life = body->max_lifetime.value_or(settings_.session_max_lifetime);
  auto s = sessions_.add(name, route->tenant, body->durable, std::move(*made), idle, life);
  if (!s) {
    observe("too_many_sessions");
    return send_error(res, 429, "too_many_sessions",
                      "gateway.max_sessions (" + std::to_string(settings_.max_sessions) +
                        ") sessions are open: end one (DELETE) first");
  }
  observe("ok");
  res.set_header("Location", "/v1/sessions/" + s->id);
  send_json(res, 201, session_doc(*s, s->created, idle, life));
}

void http_gateway::session_call(const httplib::Request& req, httplib::Response& res, bool eval) {
  const auto t0 = std::chrono::steady_clock::now();
  auto found = find_session(sessions_, tokens_, req, res, true);
  if (!found.found)
    return;
  auto s = found.found;
  auto doc = read_json_body(req, res, false);
  if (!doc)
    return;
  auto body = parse_call_body(*doc, eval);
  if (!body)
    return send_error(res, 400, "bad_request", body.error().message);
  if (!body->key.empty())
    return send_error(res, 400, "bad_request", "'key' does not apply to a session: it is pinned");
  eval_options o;
  o.timeout = body->timeout;
  o.replay = s->durable;
  if (eval)
    o.file = body->file;
  auto r = eval ? s->env->eval(body->code, body->vars, o)
                : s->env->call(body->name, body->args, body->vars, o);
  if (!r && (r.error().code == errc::env_lost || r.error().code == errc::env_not_found)) {
    sessions_.end(s->id, "lost: " + r.error().message);
    metrics_.observe(s->pool, eval ? "session_eval" : "session_call", to_string(r.error().code),
                     std::chrono::steady_clock::now() - t0);
    return send_error(res, 410, "session_gone",
                      "session '" + s->id + "' ended: lost: " + r.error().message);
  }
  answer_value(res, r, [&](std::string_view code) {
    metrics_.observe(s->pool, eval ? "session_eval" : "session_call", code,
                     std::chrono::steady_clock::now() - t0);
  });
}

void http_gateway::session_get(const httplib::Request& req, httplib::Response& res) {
  auto r = find_session(sessions_, tokens_, req, res, false);
  if (!r.found)
    return;
  send_json(res, 200, session_doc(*r.found, r.last_used, r.idle_ttl, r.max_lifetime));
}

void http_gateway::session_patch(const httplib::Request& req, httplib::Response& res) {
  auto found = find_session(sessions_, tokens_, req, res, true);
  if (!found.found)
    return;
  auto s = found.found;
  auto doc = read_json_body(req, res, false);
  if (!doc)
    return;
  std::chrono::milliseconds idle{0}, life{0};
  for (auto& [k, v] : doc->items()) {
    if (k != "idle_ttl" && k != "max_lifetime")
      return send_error(res, 400, "bad_request",
                        "unknown field '" + k + "' (known: idle_ttl, max_lifetime)");
    auto d = parse_timeout(v, k);
    if (!d)
      return send_error(res, 400, "bad_request", d.error().message);
    (k == "idle_ttl" ? idle : life) = *d;
  }
  if (!sessions_.extend(s->id, idle, life))
    return send_error(res, 410, "session_gone", "session '" + s->id + "' ended");
  auto again = sessions_.use(s->id);
  if (!again.found)
    return send_error(res, 410, "session_gone", "session '" + s->id + "' ended: " + again.reason);
  send_json(res, 200, session_doc(*again.found, again.last_used, again.idle_ttl, again.max_lifetime));
}

void http_gateway::session_delete(const httplib::Request& req, httplib::Response& res) {
  auto r = find_session(sessions_, tokens_, req, res, false);
  if (!r.found)
    return;
  sessions_.end(r.found->id, "deleted");
  res.status = 204;
}

} // namespace pyvisor::gateway
