// The gateway's server: binding, TLS, limits, the route table and its wrapper (in-flight count,
// refused connections, exceptions, status metrics), authorization, draining and stopping.
#include "gateway/http_gateway.hpp"

#include <httplib.h>

#include <sys/socket.h>

#include <fstream>
#include <regex>

#include "gateway/connection_queue.hpp"
#include "gateway/http_errors.hpp"
#include "gateway/socket_lookup.hpp"
#include "gateway/status_page.hpp"

namespace pyvisor::gateway {

namespace {

template <class D>
std::pair<time_t, time_t> sec_usec(D d) {
  const auto us = std::chrono::duration_cast<std::chrono::microseconds>(d).count();
  return {static_cast<time_t>(us / 1000000), static_cast<time_t>(us % 1000000)};
}

bool readable(const std::string& path) {
  std::ifstream in{path};
  return static_cast<bool>(in);
}

/// The methods a gateway path answers ("POST", "GET, PATCH, DELETE"), or null for an unknown
/// path (the routes installed in install_routes()).
const char* allowed_methods(const std::string& path) {
  static const std::regex post_only{R"(/v1/pools/[^/]+/(eval|call|sessions)|/v1/sessions/[^/]+/(eval|call))"};
  static const std::regex session{R"(/v1/sessions/[^/]+)"};
  static const std::regex get_only{R"(/|/healthz|/readyz|/metrics|/favicon\.ico|/v1/status|/v1/pools)"};
  if (std::regex_match(path, post_only))
    return "POST";
  if (std::regex_match(path, session))
    return "GET, PATCH, DELETE";
  if (std::regex_match(path, get_only))
    return "GET";
  return nullptr;
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
  // cpp-httplib's default also sets SO_REUSEPORT, with which a second daemon binds the same port
  // and silently shares its connections. Only SO_REUSEADDR (a restart rebinds while old
  // connections are in TIME_WAIT): a port in use is an error.
  svr.set_socket_options([](socket_t sock) {
    int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
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
  // Debian's cpp-httplib 0.11 listens with a backlog of 5: a burst of clients connecting at
  // once (64 keep-alive clients starting) overflows it, and the kernel drops their handshakes,
  // which then wait for SYN retransmissions (1 s, 3 s, ...). Listen again with the system's
  // maximum (Linux applies the new backlog to a listening socket).
  if (const int fd = find_listening_socket(g->port_); fd >= 0)
    ::listen(fd, SOMAXCONN);
  return g;
}

void http_gateway::serve() {
  if (listener_.joinable())
    return;
  listener_ = std::thread([this] {
    server_->listen_after_bind();
    listener_done_ = true;
  });
  sweeper_ = std::thread([this] { session_sweeper(); });
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
  // Bound but never served: httplib closes its listening socket only at the end of its accept
  // loop, so run the loop and end it at once.
  if (server_ && !listener_.joinable()) {
    listener_ = std::thread([this] {
    server_->listen_after_bind();
    listener_done_ = true;
  });
    while (!server_->is_running() && !listener_done_.load())
      std::this_thread::yield();
  }
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
  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    if (!connection_queue::refusing())
      return httplib::Server::HandlerResponse::Unhandled;
    const std::string body =
      dump_json(gateway_error_document(
        "too_many_connections", "the gateway has max_connections connections open; retry later")) +
      "\n";
    // cpp-httplib 0.11 decides to keep a connection open from the request alone, before this
    // handler runs, so "Connection: close" on a response does not close it, and a refused
    // client that keeps its socket would hold an overflow thread. On plain HTTP the 503 is
    // written here and the socket shut down; httplib then finds it dead, writes nothing more
    // and closes it. (With TLS the bytes must go through httplib: the refusal is answered the
    // ordinary way and the connection lives until idle_timeout.)
    if (!tls_)
      if (const int fd = find_connection(req.remote_addr, req.remote_port, port_); fd >= 0) {
        const std::string raw = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
                                "Content-Length: " + std::to_string(body.size()) +
                                "\r\nConnection: close\r\nRetry-After: 1\r\n\r\n" + body;
        std::size_t off = 0;
        while (off < raw.size()) {
          const auto n = ::send(fd, raw.data() + off, raw.size() - off, MSG_NOSIGNAL);
          if (n <= 0)
            break;
          off += static_cast<std::size_t>(n);
        }
        ::shutdown(fd, SHUT_RDWR);
      }
    res.set_header("Connection", "close");
    res.set_header("Retry-After", "1");
    res.status = 503;
    res.set_content(body, "application/json");
    return httplib::Server::HandlerResponse::Handled;
  });
  svr.set_post_routing_handler([this](const httplib::Request&, httplib::Response& res) {
    metrics_.response(res.status);
  });
  svr.set_error_handler(httplib::Server::HandlerWithResponse{[](const httplib::Request& req,
                                                                httplib::Response& res) {
    if (!res.body.empty())
      return httplib::Server::HandlerResponse::Unhandled;
    // cpp-httplib routes by method: a known path with another method arrives here as 404.
    if (res.status == 404)
      if (const char* allow = allowed_methods(req.path)) {
        res.set_header("Allow", allow);
        res.status = 405;
      }
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
  if (!tokens_.enabled()) {  // the common case on loopback: no header to look at
    if (i != routes.end())
      return &i->second;
    send_error(res, 404, "not_found", "no pool '" + name + "'");
    return nullptr;
  }
  const std::string auth = req.get_header_value("Authorization");
  // Unknown pools are 404 only to a client that may see pools at all (no probing without a
  // token).
  if (i == routes.end()) {
    if (tokens_.authenticate(auth) == nullptr) {
      res.set_header("WWW-Authenticate", "Bearer");
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
