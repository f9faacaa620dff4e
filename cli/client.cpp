// The client commands' HTTP client (client.hpp), on cpp-httplib.

#include "client.hpp"

#include <netdb.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

#include <httplib.h>

#include "gateway/http_errors.hpp"
#include "pyvisor/config.hpp"

namespace pyvisor::cli {
namespace {

using namespace std::chrono_literals;

std::string env(const char* name) {
  const char* v = std::getenv(name);
  return v != nullptr ? std::string(v) : std::string();
}

/// The base URL, checked: http:// or https://, a host and an optional port, nothing after but
/// one '/'. (cpp-httplib would read anything else as a host name.)
std::string checked_url(std::string url, const std::string& where) {
  const auto bad = [&](const std::string& why) {
    return usage_error{where + ": '" + url + "' " + why +
                       " (expected http://HOST[:PORT] or https://HOST[:PORT])"};
  };
  const std::string_view scheme = url.starts_with("http://")    ? "http://"
                                  : url.starts_with("https://") ? "https://"
                                                                : "";
  if (scheme.empty()) throw bad("is not an http:// or https:// URL");
  std::string hostport = url.substr(scheme.size());
  if (hostport.ends_with('/')) hostport.pop_back();
  if (hostport.empty()) throw bad("has no host");
  if (hostport.find_first_of("/?#@ \t") != std::string::npos) {
    throw bad("has a path, query or user part");
  }
  // The port: after the last ':' that is not inside an IPv6 address's brackets.
  const auto bracket = hostport.rfind(']');
  const auto colon = hostport.rfind(':');
  if (colon != std::string::npos && (bracket == std::string::npos || colon > bracket)) {
    const std::string port = hostport.substr(colon + 1);
    const bool digits = !port.empty() && port.size() <= 5 &&
                        std::all_of(port.begin(), port.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!digits || std::stoi(port) == 0 || std::stoi(port) > 65535) throw bad("has an invalid port");
    if (colon == 0) throw bad("has no host");
  }
  return std::string(scheme) + hostport;
}

/// The first word of the first line that is neither empty nor a '#' comment.
std::string first_token(const std::string& text) {
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    std::istringstream words(line);
    std::string word;
    if (words >> word && !word.starts_with('#')) return word;
  }
  return {};
}

std::string read_token_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw usage_error{"--token-file: cannot read '" + path + "': " + std::strerror(errno)};
  std::ostringstream text;
  text << in.rdbuf();
  std::string token = first_token(text.str());
  if (token.empty()) throw usage_error{"--token-file: '" + path + "' holds no token"};
  return token;
}

/// The host of a checked URL (IPv6 without its brackets).
std::string host_of(const std::string& url) {
  std::string host = url.substr(url.find("://") + 3);
  if (host.starts_with('[')) return host.substr(1, host.find(']') - 1);
  return host.substr(0, host.find(':'));
}

/// Whether the URL's host name resolves (cpp-httplib reports both cases as a connection
/// failure).
bool resolves(const std::string& url) {
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  const int rc = ::getaddrinfo(host_of(url).c_str(), nullptr, &hints, &found);
  if (found != nullptr) ::freeaddrinfo(found);
  return rc == 0;
}

/// Why no answer came, in words.
std::string transport_failure(const std::string& url, httplib::Error e) {
  const std::string hint = " (is `pyvisor serve` running?)";
  switch (e) {
    case httplib::Error::Connection:
      if (!resolves(url)) return "cannot connect to " + url + ": unknown host '" + host_of(url) + "'";
      return "cannot connect to " + url + ": connection refused or host unreachable" + hint;
    case httplib::Error::ConnectionTimeout:
      return "cannot connect to " + url + ": connection timed out" + hint;
    case httplib::Error::BindIPAddress:
      return "cannot connect to " + url + ": cannot bind the local address";
    case httplib::Error::SSLConnection:
      return "cannot connect to " + url + ": the TLS handshake failed (does it serve https?)";
    case httplib::Error::SSLLoadingCerts:
      return "cannot connect to " + url + ": cannot load the CA certificates (--cacert)";
    case httplib::Error::SSLServerVerification:
      return "cannot connect to " + url + ": its certificate could not be verified (give the CA "
                                          "that signed it with --cacert FILE)";
    case httplib::Error::Read:
      return "no answer from " + url + ": the connection closed or timed out before the answer" +
             (url.starts_with("http://") ? " (does it serve https://?)" : "");
    case httplib::Error::Write:
      return "cannot send the request to " + url + ": the connection closed";
    default:
      return "request to " + url + " failed: " + httplib::to_string(e);
  }
}

} // namespace

CLI::Option* add_connect_options(CLI::App* cmd, connect_args& a) {
  CLI::Option* connect =
      cmd->add_option("--connect", a.url,
                      "the daemon's URL, http://HOST:PORT or https://HOST:PORT (default: "
                      "$PYVISOR_URL, else " + std::string(default_url) + ")")
          ->type_name("URL")
          ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--token-file", a.token_file,
                  "send the bearer token in FILE (its first word; default: $PYVISOR_TOKEN)")
      ->type_name("FILE")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  cmd->add_option("--cacert", a.ca_file,
                  "https: verify the daemon's certificate with the CA certificates in FILE "
                  "(PEM; default: $PYVISOR_CACERT, else the system's)")
      ->type_name("FILE")
      ->multi_option_policy(CLI::MultiOptionPolicy::TakeLast);
  return connect;
}

const json* answer::error() const {
  if (const auto e = body.find("error"); e != body.end() && e->is_object()) return &body;
  return nullptr;
}

client::client(const connect_args& a, std::chrono::milliseconds read_bound) {
  if (!a.url.empty()) {
    url_ = checked_url(a.url, "--connect");
  } else if (const std::string u = env("PYVISOR_URL"); !u.empty()) {
    url_ = checked_url(u, "PYVISOR_URL");
  } else {
    url_ = default_url;
  }
  std::string token;
  if (!a.token_file.empty()) {
    token = read_token_file(a.token_file);
  } else {
    token = first_token(env("PYVISOR_TOKEN"));
  }
  const std::string ca_file = !a.ca_file.empty() ? a.ca_file : env("PYVISOR_CACERT");
  if (!ca_file.empty()) {
    std::ifstream probe(ca_file);
    if (!probe) {
      throw usage_error{std::string(a.ca_file.empty() ? "PYVISOR_CACERT" : "--cacert") +
                        ": cannot read '" + ca_file + "': " + std::strerror(errno)};
    }
  }
  // A connection the daemon closed is an error to report, not a reason to die (OpenSSL's writes
  // do not ask for MSG_NOSIGNAL); a closed stdout is then a failed write (exit 1) as well.
  std::signal(SIGPIPE, SIG_IGN);
  http_ = std::make_unique<httplib::Client>(url_);
  http_->set_keep_alive(true);
  http_->set_tcp_nodelay(true);
  http_->set_connection_timeout(10s);
  http_->set_read_timeout(read_bound);
  http_->set_write_timeout(30s);
  if (!token.empty()) {
    http_->set_bearer_token_auth(token);
    token_given_ = true;
  }
  if (!ca_file.empty()) http_->set_ca_cert_path(ca_file);
}

client::~client() = default;

answer client::get(const std::string& path) {
  return finish(http_->Get(path));
}

answer client::post(const std::string& path, const json& body) {
  return finish(http_->Post(path, dump_json(body), "application/json"));
}

answer client::del(const std::string& path) {
  return finish(http_->Delete(path));
}

answer client::finish(const httplib::Result& r) {
  answer a;
  if (!r) {
    a.body = gateway_error_document("connection_failed", transport_failure(url_, r.error()));
    return a;
  }
  a.status = r->status;
  const auto bad_answer = [&](const std::string& why) {
    a.body = gateway_error_document(
        "bad_answer", url_ + " answered HTTP " + std::to_string(a.status) + " " + why +
                          " (is it a pyvisor daemon?)");
    return a;
  };
  if (r->body.empty()) {
    if (a.status < 200 || a.status >= 300) return bad_answer("with an empty body");
    a.body = json::object();
    return a;
  }
  try {
    // Values nest at most max_render_depth containers, inside {"value": ...}.
    a.body = parse_json(r->body, max_render_depth + 2);
  } catch (const json_error&) {
    return bad_answer("with a body that is not JSON");
  }
  if (!a.body.is_object()) return bad_answer("with a body that is not a JSON object");
  const bool failed = a.status < 200 || a.status >= 300;
  if (failed && a.error() == nullptr) return bad_answer("without an error object");
  if (a.status == 401) {
    json& message = a.body["error"]["message"];
    if (message.is_string()) {
      message = message.get<std::string>() +
                (token_given_ ? " (the daemon refused the token given)"
                              : " (give one with --token-file FILE or PYVISOR_TOKEN)");
    }
  }
  return a;
}

std::chrono::milliseconds read_bound_for(const std::string& timeout) {
  constexpr auto day = std::chrono::milliseconds(24h);
  if (timeout.empty()) return day;
  const auto d = pyvisor::parse_duration(timeout);
  if (!d || *d >= day) return day;
  return *d + 30s;
}

const std::string& checked_segment(const std::string& s, std::string_view what) {
  const bool ok = !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '-' || c == '_';
  });
  if (!ok) {
    throw usage_error{std::string(what) + ": '" + s +
                      "' is not a valid name (letters, digits, '-' and '_')"};
  }
  return s;
}

} // namespace pyvisor::cli
