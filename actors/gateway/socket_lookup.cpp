#include "gateway/socket_lookup.hpp"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdlib>

namespace pyvisor::gateway {

namespace {

/// The first fd of this process for which `match(fd)` holds; -1 when none does.
template <class Match>
int find_fd(Match match) {
  DIR* d = ::opendir("/proc/self/fd");
  if (d == nullptr)
    return -1;
  int found = -1;
  while (dirent* e = ::readdir(d)) {
    char* end = nullptr;
    const long fd = std::strtol(e->d_name, &end, 10);
    if (end == e->d_name || *end != '\0' || fd == ::dirfd(d))
      continue;
    if (match(static_cast<int>(fd))) {
      found = static_cast<int>(fd);
      break;
    }
  }
  ::closedir(d);
  return found;
}

int port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET)
    return ntohs(reinterpret_cast<const sockaddr_in&>(a).sin_port);
  if (a.ss_family == AF_INET6)
    return ntohs(reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
  return -1;
}

/// The socket's own (`peer` false) or its peer's address; family AF_UNSPEC when it has none.
sockaddr_storage address_of(int fd, bool peer) {
  sockaddr_storage a{};
  socklen_t len = sizeof a;
  auto* sa = reinterpret_cast<sockaddr*>(&a);
  if ((peer ? ::getpeername(fd, sa, &len) : ::getsockname(fd, sa, &len)) != 0)
    a.ss_family = AF_UNSPEC;
  return a;
}

std::string host_of(const sockaddr_storage& a) {
  char host[INET6_ADDRSTRLEN] = {};
  if (a.ss_family == AF_INET)
    ::inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in&>(a).sin_addr, host, sizeof host);
  else if (a.ss_family == AF_INET6)
    ::inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6&>(a).sin6_addr, host, sizeof host);
  return host;
}

} // namespace

int find_listening_socket(int port) {
  return find_fd([port](int fd) {
    int listening = 0;
    socklen_t len = sizeof listening;
    return ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening != 0 &&
           port_of(address_of(fd, false)) == port;
  });
}

int find_connection(const std::string& peer_addr, int peer_port, int local_port) {
  return find_fd([&](int fd) {
    if (port_of(address_of(fd, false)) != local_port)
      return false;
    const auto peer = address_of(fd, true);
    return port_of(peer) == peer_port && host_of(peer) == peer_addr;
  });
}

} // namespace pyvisor::gateway
