#pragma once

// The test's side of the gateway: JSON requests through cpp-httplib's client, raw TCP sockets
// (for slow and idle clients), and reading Prometheus samples.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <optional>
#include <sstream>
#include <string>

#include <httplib.h>
#include <nlohmann/json.hpp>

namespace pyvisor::daemon_test {

using json = nlohmann::json;

/// One HTTP answer (or why there was none).
struct reply {
  int status = -1;  ///< -1: no answer (error says why)
  std::string body;
  json doc;  ///< the body parsed; discarded when it is not JSON
  httplib::Headers headers;
  std::string error;

  /// The error object's code, or "".
  std::string code() const {
    if (doc.is_object() && doc.contains("error") && doc["error"].is_object() &&
        doc["error"].contains("code") && doc["error"]["code"].is_string())
      return doc["error"]["code"].get<std::string>();
    return {};
  }
  std::string message() const {
    if (doc.is_object() && doc.contains("error") && doc["error"].contains("message") &&
        doc["error"]["message"].is_string())
      return doc["error"]["message"].get<std::string>();
    return {};
  }
  std::string header(const std::string& name) const {
    auto i = headers.find(name);
    return i == headers.end() ? std::string{} : i->second;
  }
  std::string describe() const {
    if (status < 0)
      return "no answer: " + error;
    return "HTTP " + std::to_string(status) + " " + body;
  }
};

/// A client of one gateway; with `keep_alive` it reuses its connection (one client per thread).
class gateway_client {
public:
  explicit gateway_client(int port, std::string token = {}, bool keep_alive = false,
                          std::chrono::milliseconds read_timeout = std::chrono::seconds{60})
    : cli_("127.0.0.1", port), token_(std::move(token)) {
    cli_.set_keep_alive(keep_alive);
    cli_.set_tcp_nodelay(true);  // headers and body are separate writes: no Nagle stall
    cli_.set_connection_timeout(std::chrono::seconds{10});
    cli_.set_read_timeout(read_timeout);
    cli_.set_write_timeout(std::chrono::seconds{10});
  }

  reply get(const std::string& path) { return finish(cli_.Get(path, headers())); }
  reply del(const std::string& path) { return finish(cli_.Delete(path, headers())); }
  reply post(const std::string& path, const json& body) { return post_raw(path, body.dump()); }
  reply post_raw(const std::string& path, const std::string& body,
                 const std::string& content_type = "application/json") {
    return finish(cli_.Post(path, headers(), body, content_type));
  }
  reply patch(const std::string& path, const json& body) {
    return finish(cli_.Patch(path, headers(), body.dump(), "application/json"));
  }
  reply put(const std::string& path, const json& body) {
    return finish(cli_.Put(path, headers(), body.dump(), "application/json"));
  }

  reply eval(const std::string& pool, const std::string& code, json extra = json::object()) {
    extra["code"] = code;
    return post("/v1/pools/" + pool + "/eval", extra);
  }

private:
  httplib::Headers headers() const {
    httplib::Headers h;
    if (!token_.empty())
      h.emplace("Authorization", "Bearer " + token_);
    return h;
  }

  static reply finish(const httplib::Result& r) {
    reply out;
    if (!r) {
      out.error = httplib::to_string(r.error());
      return out;
    }
    out.status = r->status;
    out.body = r->body;
    out.headers = r->headers;
    out.doc = json::parse(r->body, nullptr, false);
    return out;
  }

  httplib::Client cli_;
  std::string token_;
};

/// The value of the sample `series` (e.g. `pyvisor_reloads_total{result="ok"}`) in a Prometheus
/// text exposition.
inline std::optional<double> metric_value(const std::string& text, const std::string& series) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.size() > series.size() && line.compare(0, series.size(), series) == 0 &&
        line[series.size()] == ' ')
      return std::stod(line.substr(series.size() + 1));
  }
  return std::nullopt;
}

/// A raw TCP connection to 127.0.0.1:port (for clients that misbehave on purpose).
class raw_socket {
public:
  explicit raw_socket(int port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd_ >= 0 && ::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
      errno_ = errno;
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~raw_socket() { close(); }
  raw_socket(const raw_socket&) = delete;
  raw_socket& operator=(const raw_socket&) = delete;

  bool connected() const noexcept { return fd_ >= 0; }
  int connect_errno() const noexcept { return errno_; }
  void close() {
    if (fd_ >= 0)
      ::close(fd_);
    fd_ = -1;
  }

  bool send_all(const std::string& s) {
    std::size_t off = 0;
    while (off < s.size()) {
      const auto n = ::send(fd_, s.data() + off, s.size() - off, MSG_NOSIGNAL);
      if (n <= 0)
        return false;
      off += static_cast<std::size_t>(n);
    }
    return true;
  }

  /// Reads what arrives within `bound`; stops at EOF (closed() tells) or when `done(data)`.
  template <class Done>
  std::string read_until(std::chrono::milliseconds bound, Done done) {
    const auto until = std::chrono::steady_clock::now() + bound;
    while (!closed_ && !done(data_)) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        until - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        break;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(std::min<long long>(left.count(), 100))) <= 0)
        continue;
      char buf[4096];
      const auto n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0)
        closed_ = true;  // EOF or reset: the server closed it
      else
        data_.append(buf, static_cast<std::size_t>(n));
    }
    return data_;
  }

  /// Reads one complete HTTP response (headers and Content-Length body) within `bound`.
  std::string read_response(std::chrono::milliseconds bound) {
    read_until(bound, [](const std::string& d) { return response_end(d) != std::string::npos; });
    const auto end = response_end(data_);
    if (end == std::string::npos)
      return {};
    std::string r = data_.substr(0, end);
    data_.erase(0, end);
    return r;
  }

  /// Waits until the server closed the connection (EOF or reset) within `bound`.
  bool wait_closed(std::chrono::milliseconds bound) {
    read_until(bound, [](const std::string&) { return false; });
    return closed_;
  }

  bool closed() const noexcept { return closed_; }

  /// The end of the first complete response in `d` (npos if incomplete).
  static std::size_t response_end(const std::string& d) {
    const auto h = d.find("\r\n\r\n");
    if (h == std::string::npos)
      return std::string::npos;
    std::size_t length = 0;
    std::istringstream in(d.substr(0, h));
    for (std::string line; std::getline(in, line);) {
      std::string lower = line;
      for (auto& c : lower)
        c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (lower.rfind("content-length:", 0) == 0)
        length = std::stoul(line.substr(15));
    }
    return d.size() >= h + 4 + length ? h + 4 + length : std::string::npos;
  }

private:
  int fd_ = -1;
  int errno_ = 0;
  bool closed_ = false;
  std::string data_;
};

} // namespace pyvisor::daemon_test
