// parse_listen_address: "HOST:PORT" of `[runtime] http_listen`.
#include <arpa/inet.h>

#include <charconv>

#include "pyvisor/config.hpp"

namespace pyvisor {

bool listen_address::loopback() const {
  if (host == "localhost")
    return true;
  in_addr v4{};
  if (inet_pton(AF_INET, host.c_str(), &v4) == 1)
    return (ntohl(v4.s_addr) >> 24) == 127;
  in6_addr v6{};
  if (inet_pton(AF_INET6, host.c_str(), &v6) == 1)
    return IN6_IS_ADDR_LOOPBACK(&v6);
  return false;
}

expected<listen_address> parse_listen_address(std::string_view text) {
  const auto bad = [&](const std::string& why) -> expected<listen_address> {
    return make_error(errc::config_error,
                      "bad listen address \"" + std::string{text} + "\": " + why +
                          " (expected HOST:PORT, e.g. \"127.0.0.1:4270\" or \"[::1]:4270\")");
  };
  listen_address a;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos)
      return bad("no ']' after the IPv6 address");
    a.host = std::string{text.substr(1, close - 1)};
    if (close + 1 >= text.size() || text[close + 1] != ':')
      return bad("no ':PORT' after ']'");
    port = text.substr(close + 2);
    in6_addr v6{};
    if (inet_pton(AF_INET6, a.host.c_str(), &v6) != 1)
      return bad("'" + a.host + "' is not an IPv6 address");
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos)
      return bad("no ':PORT'");
    a.host = std::string{text.substr(0, colon)};
    if (a.host.find(':') != std::string::npos)
      return bad("an IPv6 address needs brackets");
    port = text.substr(colon + 1);
  }
  if (a.host.empty())
    return bad("no host (use 0.0.0.0 for every IPv4 interface)");
  for (char ch : a.host)
    if (!(std::isalnum(static_cast<unsigned char>(ch)) || ch == '.' || ch == '-' || ch == ':' ||
          ch == '_'))
      return bad("'" + a.host + "' is not a host name or address");
  int p = -1;
  const auto r = std::from_chars(port.data(), port.data() + port.size(), p);
  if (port.empty() || r.ec != std::errc{} || r.ptr != port.data() + port.size() || p < 0 ||
      p > 65535)
    return bad("port must be a number from 0 to 65535");
  a.port = p;
  return a;
}

} // namespace pyvisor
