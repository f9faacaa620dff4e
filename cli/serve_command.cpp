// `pyvisor serve CONFIG`: runs the daemon (actors/gateway/daemon.hpp; docs/http.md).

#include "commands.hpp"
#include "gateway/daemon.hpp"

namespace pyvisor::cli {

command_runner add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand(
    "serve", "Runs the daemon: deploys CONFIG's tree and serves it over HTTP until SIGTERM.");
  auto config = std::make_shared<std::string>();
  cmd->add_option("CONFIG", *config, "the config file (e.g. config/pyvisor.toml)")->required();
  cmd->footer(R"text(Prints "pyvisor: ready on URL (pools: ...)" on stdout once every pool reached its
min_ready; logs lifecycle events on stderr ([runtime] log_format text or json).
SIGHUP reloads CONFIG (an invalid file is rejected and the running tree keeps serving);
SIGTERM/SIGINT stop accepting, let requests in flight finish (within [runtime] shutdown_grace),
stop the tree and exit 0.

exit status:
  0  stopped by SIGTERM/SIGINT
  1  CONFIG is invalid, or the tree or the HTTP listener could not start
  2  usage error)text");
  return [config] {
    gateway::daemon::block_signals();
    gateway::daemon d{gateway::daemon_options{*config}};
    return d.run();
  };
}

} // namespace pyvisor::cli
