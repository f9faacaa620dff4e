#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "process/fork_server.hpp"
#include "pyvisor/isolation.hpp"

namespace pyvisor::detail {

/// The runtime's fork servers (spawn_mode::fork_server), one per template configuration:
/// interpreters whose template command, environment, working directory and isolation are equal
/// share one template process.
class fork_server_registry {
public:
  /// The fork server for `tmpl` (its argv is the template's command), made on first use. Fork
  /// servers no interpreter holds any more are dropped here (their templates end).
  std::shared_ptr<process::fork_server> get(const process::spawn_request& tmpl,
                                            process::fork_server::line_fn on_line = {});
  /// Ends every template (the runtime's shutdown, after every interpreter stopped).
  void shutdown();

private:
  struct entry {
    process::spawn_request key;
    std::shared_ptr<process::fork_server> server;
  };
  std::mutex mu_;
  std::vector<entry> entries_;
  bool shut_down_ = false;
};

} // namespace pyvisor::detail
