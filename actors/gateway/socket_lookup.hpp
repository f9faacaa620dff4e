#pragma once

// cpp-httplib 0.11 hides its sockets; the gateway finds them among this process's fds by their
// addresses (/proc/self/fd) where it must act on one: the listening socket (its backlog) and a
// refused connection (answered and shut down directly).

#include <string>

namespace pyvisor::gateway {

/// The listening socket of this process bound to `port`; -1 when there is none.
int find_listening_socket(int port);

/// The socket of this process connected to `peer_addr:peer_port` and bound to `local_port`;
/// -1 when there is none.
int find_connection(const std::string& peer_addr, int peer_port, int local_port);

} // namespace pyvisor::gateway
