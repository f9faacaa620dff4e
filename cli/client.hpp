#pragma once

// The HTTP client of the pyvisor program's client commands (`pyvisor status`, `pyvisor session`,
// `pyvisor eval --pool/--session`): talks to `pyvisor serve`'s gateway (docs/http.md) with
// cpp-httplib (keep-alive, TCP_NODELAY, https through OpenSSL) and reads its JSON answers.
//
// Where: --connect URL, else $PYVISOR_URL, else http://127.0.0.1:4270. Who: the bearer token
// read from --token-file FILE, else $PYVISOR_TOKEN (none: no Authorization header). https: the
// daemon's certificate is verified with --cacert FILE, else $PYVISOR_CACERT, else the system's
// CA certificates.

#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include <CLI/CLI.hpp>

#include "commands.hpp"
#include "gateway/json_value.hpp"

namespace httplib {
class Client;
class Result;
} // namespace httplib

namespace pyvisor::cli {

inline constexpr std::string_view default_url = "http://127.0.0.1:4270";

/// The connection options every client command takes.
struct connect_args {
  std::string url;         ///< --connect
  std::string token_file;  ///< --token-file
  std::string ca_file;     ///< --cacert
};

/// Adds --connect URL, --token-file FILE and --cacert FILE to `cmd`; returns --connect.
CLI::Option* add_connect_options(CLI::App* cmd, connect_args& a);

/// An answer of the daemon. `status` is the HTTP status, or 0 when no answer came (the daemon
/// could not be reached, the connection broke): `body` is then an error document with the
/// code "connection_failed". An answer that is not JSON (not a pyvisor daemon, a proxy's page)
/// is an error document with the code "bad_answer". A 204 has the body {}.
struct answer {
  int status = 0;
  json body;

  /// The error document ({"error": {...}}) when the request failed, else nullptr.
  const json* error() const;
};

/// A connection to the daemon (one keep-alive connection, made at the first request).
class client {
public:
  /// Resolves the URL and the token (a bad URL, or a token file that cannot be read or holds
  /// no token, throws usage_error). `read_bound`: how long to wait for an answer.
  client(const connect_args& a, std::chrono::milliseconds read_bound);
  ~client();
  client(const client&) = delete;
  client& operator=(const client&) = delete;

  /// The daemon's base URL (no trailing '/').
  const std::string& url() const noexcept { return url_; }

  answer get(const std::string& path);
  answer post(const std::string& path, const json& body);
  answer del(const std::string& path);

private:
  answer finish(const httplib::Result& r);

  std::string url_;
  bool token_given_ = false;
  std::unique_ptr<httplib::Client> http_;
};

/// The read bound of a request that runs code with --timeout `timeout` ("" = the pool's
/// default): the timeout plus a margin, or a day without one (the daemon answers 504 itself).
std::chrono::milliseconds read_bound_for(const std::string& timeout);

/// A path segment (pool name, session id): letters, digits, '-' and '_' only, so that it
/// needs no escaping (else usage_error naming `what`).
const std::string& checked_segment(const std::string& s, std::string_view what);

} // namespace pyvisor::cli
