// The gateway's server: binding, TLS, limits, the route table and its wrapper (in-flight count,
// refused connections, exceptions, status metrics), authorization, draining and stopping.
#include "gateway/http_gateway.hpp"

#include <httplib.h>

#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>
#include <fstream>

#include "gateway/connection_queue.hpp"
#include "gateway/http_errors.hpp"
#include "gateway/status_page.hpp"

namespace pyvisor::gateway {

namespace {

template <class D>
std::pair<time_t, time_t> sec_usec(D d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return {static_cast<time_t>(us / 1000000), static_cast<time_t>(us % 1000000)};
}

/// Debian's cpp-httplib 0.11 listens with a backlog of 5: a burst of clients connecting at once
/// (64 keep-alive clients starting) overflows it, and the kernel drops their handshakes, which
/// then wait for SYN retransmissions (1 s, 3 s, ...). httplib gives no access to its listening
/// socket, so find it (a listening socket of ours bound to `port`) and listen again with the
/// system's maximum (Linux applies the new backlog to a listening socket).
void widen_backlog(int port) {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr)
    return;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == ::dirfd(d))
      continue;
    int listening = 0;
    socklen_t len = sizeof listening;
    if (::getsockopt(static_cast<int>(fd), SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 ||
        listening == 0)
      continue;
    sockaddr_storage addr{};
    socklen_t alen = sizeof addr;
    if (::getsockname(static_cast<int>(fd), reinterpret_cast<sockaddr*>(&addr), &alen) != 0)
      continue;
    int bound = -1;
    if (addr.ss_family == AF_INET)
      bound = ntohs(reinterpret_cast<sockaddr_in*>(&addr)->sin_port);
    else if (addr.ss_family == AF_INET6)
      bound = ntohs(reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port);
    if (bound == port)
      ::listen(static_cast<int>(fd), SOMAXCONN);
  }
  ::closedir(d);
}

bool readable(const std::string& path) {
  std::ifstream in{path};
  return static_cast<bool>(in);
}

} // namespace

void send_json(httplib::Response& res, int status, const json& doc) {
  res.status = status;
  res.set_content(dump_json(doc) + "\n", "application/json");
}

void send_error(httplib::Response& res, int status, std::string_view code,
                std::string_view message) {
  send_json(res, status, gateway_error_document(code, message));
}

http_gateway::http_gateway(const gateway_settings& settings, gateway_hooks hooks,
                           token_table tokens)
  : settings_(settings), hooks_(std::move(hooks)), tokens_(std::move(tokens)),
    sessions_(settings.max_sessions) {
}

expected<std::unique_ptr<http_gateway>> http_gateway::start(const listen_address& listen,
                                                            const gateway_settings& settings,
                                                            gateway_hooks hooks) {
  token_table tokens;
  if (!settings.tokens_file.empty()) {
    auto t = token_table::load(settings.tokens_file);
    if (!t)
      return std::move(t).error();
    tokens = std::move(*t);
  } else if (!listen.loopback()) {
    return make_error(errc::config_error, "listening on " + listen.host +
                                            " (not a loopback address) requires "
                                            "gateway.tokens_file");
  }
  std::unique_ptr<http_gateway> g{new http_gateway(settings, std::move(hooks), std::move(tokens))};
  if (!settings.tls_cert.empty()) {
    for (const auto* f : {&settings.tls_cert, &settings.tls_key})
      if (!readable(*f))
        return make_error(errc::config_error, *f + ": cannot read the TLS file");
    auto tls = std::make_unique<httplib::SSLServer>(settings.tls_cert.c_str(),
                                                   settings.tls_key.c_str());
    if (!tls->is_valid())
      return make_error(errc::config_error, "gateway.tls_cert/tls_key: not a usable PEM "
                                            "certificate and key pair");
    g->server_ = std::move(tls);
    g->tls_ = true;
  } else {
    g->server_ = std::make_unique<httplib::Server>();
  }
  auto& svr = *g->server_;
  const auto max_conn = settings.max_connections;
  svr.new_task_queue = [gp = g.get(), max_conn] {
    auto* q = new connection_queue(max_conn);
    gp->connections_ = q;
    return q;
  };
  auto [rs, ru] = sec_usec(settings.read_timeout);
  svr.set_read_timeout(rs, ru);
  auto [ws, wu] = sec_usec(settings.write_timeout);
  svr.set_write_timeout(ws, wu);
  svr.set_keep_alive_timeout(
    std::max<time_t>(1, static_cast<time_t>(
                          std::chrono::duration_cast<std::chrono::seconds>(settings.idle_timeout)
                            .count())));
  svr.set_keep_alive_max_count(100000);
  svr.set_payload_max_length(settings.max_body);
  svr.set_tcp_nodelay(true);
  g->install_routes();

  g->host_ = listen.host;
  if (listen.port == 0) {
    g->port_ = svr.bind_to_any_port(listen.host);
    if (g->port_ < 0)
      return make_error(errc::config_error, "cannot listen on " + listen.host + ":0");
  } else {
    if (!svr.bind_to_port(listen.host, listen.port))
      return make_error(errc::config_error,
                        "cannot listen on " + listen.host + ":" + std::to_string(listen.port) +
                          " (address in use, or not an address of this machine)");
    g->port_ = listen.port;
  }
  widen_backlog(g->port_);
  g->listener_ = std::thread([&svr] { svr.listen_after_bind(); });
  g->sweeper_ = std::thread([gp = g.get()] { gp->session_sweeper(); });
  return g;
}

http_gateway::~http_gateway() {
  stop();
}

std::string http_gateway::url() const {
  const bool v6 = host_.find(':') != std::string::npos;
  return std::string{tls_ ? "https" : "http"} + "://" + (v6 ? "[" + host_ + "]" : host_) + ":" +
         std::to_string(port_);
}

void http_gateway::stop_accepting() {
  if (server_)
    server_->stop();
}

bool http_gateway::drain(std::chrono::milliseconds bound) {
  const auto until = std::chrono::steady_clock::now() + bound;
  // Handlers end on their own: poll the counter (no event to wait for without taxing every
  // request with a notify).
  while (in_flight_.load() != 0) {
    if (std::chrono::steady_clock::now() >= until)
      return false;
    std::this_thread::sleep_for(std::chrono::milliseconds{5});
  }
  return true;
}

void http_gateway::stop() {
  stop_accepting();
  if (listener_.joinable())
    listener_.join();
  {
    std::lock_guard<std::mutex> g{sweep_mu_};
    stopping_ = true;
  }
  sweep_cv_.notify_all();
  if (sweeper_.joinable())
    sweeper_.join();
  sessions_.clear("the daemon stopped");
}

void http_gateway::pool_replaced(const std::string& pool, const std::string& reason) {
  sessions_.end_pool(pool, reason);
}

void http_gateway::session_sweeper() {
  std::unique_lock<std::mutex> lk{sweep_mu_};
  while (!stopping_) {
    sweep_cv_.wait_for(lk, std::chrono::seconds{1}, [&] { return stopping_; });
    if (stopping_)
      break;
    lk.unlock();
    sessions_.sweep();
    lk.lock();
  }
}

http_gateway::handler http_gateway::wrap(handler h) {
  return [this, h = std::move(h)](const httplib::Request& req, httplib::Response& res) {
    in_flight_.fetch_add(1);
    struct done {
      std::atomic<std::size_t>& n;
      ~done() { n.fetch_sub(1); }
    } d{in_flight_};
    h(req, res);
  };
}

void http_gateway::route_get(const char* p, handler h) {
  server_->Get(p, wrap(std::move(h)));
}
void http_gateway::route_post(const char* p, handler h) {
  server_->Post(p, wrap(std::move(h)));
}
void http_gateway::route_delete(const char* p, handler h) {
  server_->Delete(p, wrap(std::move(h)));
}
void http_gateway::route_patch(const char* p, handler h) {
  server_->Patch(p, wrap(std::move(h)));
}

void http_gateway::install_routes() {
  auto& svr = *server_;
  svr.set_pre_routing_handler([](const httplib::Request&, httplib::Response& res) {
    if (!connection_queue::refusing())
      return httplib::Server::HandlerResponse::Unhandled;
    res.set_header("Connection", "close");
    res.set_header("Retry-After", "1");
    send_error(res, 503, "too_many_connections",
               "the gateway has max_connections connections open; retry later");
    return httplib::Server::HandlerResponse::Handled;
  });
  svr.set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) {
    metrics_.response(res.status);
  });
  svr.set_error_handler(httplib::Server::HandlerWithResponse{[](const httplib::Request& req,
                                                                httplib::Response& res) {
    if (!res.body.empty())
      return httplib::Server::HandlerResponse::Unhandled;
    switch (res.status) {
      case 404:
        send_error(res, 404, "not_found", "no route " + req.method + " " + req.path);
        break;
      case 405:
        send_error(res, 405, "method_not_allowed", req.method + " is not allowed on " + req.path);
        break;
      case 408:
        send_error(res, 408, "request_timeout", "the request was not received within read_timeout");
        break;
      case 413:
        send_error(res, 413, "payload_too_large", "the request body exceeds gateway.max_body");
        break;
      case 414:
        send_error(res, 414, "uri_too_long", "the request line is too long");
        break;
      default:
        send_error(res, res.status, "bad_request", "the request could not be read");
        break;
    }
    return httplib::Server::HandlerResponse::Handled;
  }});
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res,
                               std::exception_ptr ep) {
    std::string what = "unknown exception";
    try {
      if (ep)
        std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    send_error(res, 500, "internal", "the gateway failed: " + what);
  });

  route_get("/healthz", [](const httplib::Request&, httplib::Response& res) {
    send_json(res, 200, json{{"status", "ok"}});
  });
  route_get("/readyz", [this](const httplib::Request& q, httplib::Response& r) { get_ready(q, r); });
  route_get("/", [](const httplib::Request&, httplib::Response& res) {
    res.set_header("Cache-Control", "no-store");
    res.set_header("Content-Security-Policy",
                   "default-src 'self'; style-src 'unsafe-inline'; script-src 'unsafe-inline'");
    res.set_content(std::string{status_page_html()}, "text/html; charset=utf-8");
  });
  // Browsers ask for it; the page has no icon.
  route_get("/favicon.ico", [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
  route_get("/v1/status", [this](const httplib::Request& q, httplib::Response& r) { get_status(q, r); });
  route_get("/metrics", [this](const httplib::Request& q, httplib::Response& r) { get_metrics(q, r); });
  route_get("/v1/pools", [this](const httplib::Request& q, httplib::Response& r) { get_pools(q, r); });
  route_post(R"(/v1/pools/([^/]+)/eval)",
             [this](const httplib::Request& q, httplib::Response& r) { pool_call(q, r, true); });
  route_post(R"(/v1/pools/([^/]+)/call)",
             [this](const httplib::Request& q, httplib::Response& r) { pool_call(q, r, false); });
  route_post(R"(/v1/pools/([^/]+)/sessions)",
             [this](const httplib::Request& q, httplib::Response& r) { session_create(q, r); });
  route_post(R"(/v1/sessions/([^/]+)/eval)",
             [this](const httplib::Request& q, httplib::Response& r) { session_call(q, r, true); });
  route_post(R"(/v1/sessions/([^/]+)/call)",
             [this](const httplib::Request& q, httplib::Response& r) { session_call(q, r, false); });
  route_get(R"(/v1/sessions/([^/]+))",
            [this](const httplib::Request& q, httplib::Response& r) { session_get(q, r); });
  route_patch(R"(/v1/sessions/([^/]+))",
              [this](const httplib::Request& q, httplib::Response& r) { session_patch(q, r); });
  route_delete(R"(/v1/sessions/([^/]+))",
               [this](const httplib::Request& q, httplib::Response& r) { session_delete(q, r); });
}

const pool_route* http_gateway::authorized_pool(const httplib::Request& req,
                                                httplib::Response& res, const pool_routes& routes,
                                                const std::string& name) {
  auto i = routes.find(name);
  const std::string auth = req.get_header_value("Authorization");
  // Unknown pools are 404 only to a client that may see pools at all (no probing without a
  // token).
  if (i == routes.end()) {
    if (tokens_.enabled() && tokens_.authenticate(auth) == nullptr) {
      send_error(res, 401, "unauthorized", "a valid 'Authorization: Bearer TOKEN' is required");
      return nullptr;
    }
    send_error(res, 404, "not_found", "no pool '" + name + "'");
    return nullptr;
  }
  switch (tokens_.check_pool(auth, name, i->second.tenant)) {
    case token_table::verdict::allowed:
      return &i->second;
    case token_table::verdict::unauthenticated:
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, 401, "unauthorized", "a valid 'Authorization: Bearer TOKEN' is required");
      return nullptr;
    case token_table::verdict::forbidden:
      send_error(res, 403, "forbidden", "this token may not use pool '" + name + "'");
      return nullptr;
  }
  return nullptr;
}

bool http_gateway::authorized_admin(const httplib::Request& req, httplib::Response& res) {
  switch (tokens_.check_admin(req.get_header_value("Authorization"))) {
    case token_table::verdict::allowed:
      return true;
    case token_table::verdict::unauthenticated:
      res.set_header("WWW-Authenticate", "Bearer");
      send_error(res, 401, "unauthorized", "a valid 'Authorization: Bearer TOKEN' is required");
      return false;
    case token_table::verdict::forbidden:
      send_error(res, 403, "forbidden", "this endpoint needs a token with scope '*'");
      return false;
  }
  return false;
}

} // namespace pyvisor::gateway
