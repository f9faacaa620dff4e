// pyvisor: command-line front end of the pyvisor library (CLI11 app and dispatch).
//
//   pyvisor eval [options] CODE|-f FILE   run Python code, print its result as JSON
//   pyvisor check FILE [--json]        validate a config file, print the effective tree
//   pyvisor env sync CONFIG [--tenant NAME]...   create/update the tenants' venvs
//   pyvisor serve CONFIG               run the daemon (HTTP/JSON gateway)
//   pyvisor status                     the daemon's pools, workers and readiness
//   pyvisor session new|eval|show|rm   the daemon's sessions
//   pyvisor eval --pool NAME CODE      run code in the daemon's pool
//   pyvisor --version                 print "pyvisor <version>"
//
// Exit status: 0 success, 1 error, 2 usage error, 128+N interrupted by signal N (eval),
// 3 the daemon is not ready (status).
// See cli/README.md.

#include <cstdio>
#include <exception>
#include <string>
#include <vector>

#include <CLI/CLI.hpp>

#include "commands.hpp"

namespace {

using namespace pyvisor::cli;

/// The innermost subcommand the parser had selected (`app` itself when none).
const CLI::App* selected(const CLI::App& app) {
  const CLI::App* cur = &app;
  for (;;) {
    const auto subs = cur->get_subcommands();
    if (subs.empty()) return cur;
    cur = subs.front();
  }
}

/// "pyvisor eval": the command's words.
std::string command_path(const CLI::App* cmd) {
  std::string path;
  for (const CLI::App* c = cmd; c != nullptr; c = c->get_parent()) {
    path = c->get_name() + (path.empty() ? "" : " " + path);
  }
  return path;
}

int usage_failure(const CLI::App* cmd, const std::string& message) {
  const std::string path = command_path(cmd);
  std::string out = "pyvisor: " + message + "\n";
  out += "Run '" + path + " --help' for usage.\n";
  write_all(stderr, out);
  return exit_usage;
}

} // namespace

int main(int argc, char** argv) {
  CLI::App app{"Runs Python code in supervised interpreter processes.", "pyvisor"};
  app.require_subcommand(1);
  // PYVISOR_VERSION: the project's version (cli/CMakeLists.txt). Printed on stdout, exit 0.
  app.set_version_flag("--version", std::string("pyvisor ") + PYVISOR_VERSION,
                       "print the version (pyvisor X.Y.Z) and exit");
  struct command {
    CLI::App* app;
    command_runner run;
  };
  std::vector<command> commands;
  const auto add = [&](const char* name, command_runner (*f)(CLI::App&)) {
    command_runner run = f(app);
    commands.push_back({app.get_subcommand(name), std::move(run)});
  };
  add("eval", add_eval_command);
  add("check", add_check_command);
  add("env", add_env_command);
  add("serve", add_serve_command);
  add("status", add_status_command);
  add("session", add_session_command);
  // After the subcommands: they would inherit it.
  app.footer("Run 'pyvisor <command> --help' for the options of a command.");

  // CLI11 reports a first word that is no command as a missing one: name it.
  const auto known = [&](const std::string& word) {
    for (const command& c : commands) {
      if (c.app->get_name() == word) return true;
    }
    return false;
  };
  if (argc > 1 && argv[1][0] != '-' && !known(argv[1])) {
    return usage_failure(&app, "unknown command '" + std::string(argv[1]) + "'");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) {
      // --help (of the selected subcommand) or --help-all.
      const int rc = app.exit(e);
      return std::fflush(stdout) == 0 ? rc : exit_error;
    }
    return usage_failure(selected(app), e.what());
  }

  const CLI::App* cmd = selected(app);
  try {
    for (const command& c : commands) {
      if (c.app->parsed()) return c.run();
    }
    return usage_failure(cmd, "missing command");
  } catch (const usage_error& e) {
    return usage_failure(cmd, e.message);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "pyvisor: %s\n", e.what());
    return exit_error;
  }
}
