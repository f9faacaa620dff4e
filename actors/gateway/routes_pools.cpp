// POST /v1/pools/NAME/eval and /call: a request to a pool, answered with the value or the error
// object (docs/http.md).
#include <httplib.h>

#include "gateway/http_errors.hpp"
#include "gateway/http_gateway.hpp"
#include "gateway/request_body.hpp"
#include "gateway/route_util.hpp"

namespace pyvisor::gateway {

void http_gateway::pool_call(const httplib::Request& req, httplib::Response& res, bool eval) {
  const auto t0 = std::chrono::steady_clock::now();
  const std::string name = req.matches[1];
  auto routes = hooks_.routes();
  const pool_route* route = authorized_pool(req, res, *routes, name);
  if (route == nullptr)
    return;
  auto doc = read_json_body(req, res, false);
  if (!doc)
    return;
  auto body = parse_call_body(*doc, eval);
  if (!body)
    return send_error(res, 400, "bad_request", body.error().message);
  eval_options o;
  o.key = body->key;
  o.timeout = body->timeout;
  if (eval)
    o.file = body->file;
  const auto run = [&](pyvisor::pool pool) {
    return eval ? pool.eval(body->code, body->vars, o)
                : pool.call(body->name, body->args, body->vars, o);
  };
  auto r = run(route->pool);
  // A reload replaced the pool between this request's lookup and its submission, and the old
  // generation refused it while stopping: it never ran, so it goes to the new generation.
  if (!r && (r.error().code == errc::interpreter_down || r.error().code == errc::shutting_down)) {
    auto now = hooks_.routes();
    auto i = now->find(name);
    if (i != now->end() && i->second.generation != route->generation)
      r = run(i->second.pool);
  }
  const char* endpoint = eval ? "eval" : "call";
  answer_value(res, r, [&](std::string_view code) {
    metrics_.observe(name, endpoint, code, std::chrono::steady_clock::now() - t0);
  });
}

} // namespace pyvisor::gateway
