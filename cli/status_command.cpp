// `pyvisor status [--json]`: GET /v1/status of the daemon (docs/http.md "Status"), printed as
// a tree (supervisors, pools, workers) with the daemon's readiness, or as the document itself.

#include <cstdio>
#include <memory>
#include <string>

#include "client.hpp"
#include "commands.hpp"
#include "eval_output.hpp"

namespace pyvisor::cli {
namespace {

/// Exit status when the daemon answered but a pool has no ready worker.
constexpr int exit_not_ready = 3;

constexpr std::string_view status_footer =
    R"(Text: the daemon (URL, version, pid, uptime, config, reloads), its supervision tree with
each pool (tenant, ready/workers, in flight, queued, served, restarts, errors) and each worker
(id, pid, state, restarts, last exit, RSS in MiB), then its readiness. --json: the document
of GET /v1/status as it came, on one line (docs/http.md).

exit status:
  0  the daemon answered and is ready (every pool has a ready worker)
  3  the daemon answered and is not ready
  1  error: the daemon cannot be reached ("error: connection_failed: cannot connect to URL:
     ..."), or refused the request (401 unauthorized: no or a wrong token; 403 forbidden: the
     token lacks the '*' scope); on stderr, or as an error object on stdout with --json
  2  usage error)";

struct status_args {
  connect_args conn;
  bool json = false;
};

// Members of the document, read defensively (a missing or mistyped one prints as empty/0).
std::string str(const json& j, const char* k) {
  const auto i = j.find(k);
  return i != j.end() && i->is_string() ? i->get<std::string>() : std::string();
}
double num(const json& j, const char* k) {
  const auto i = j.find(k);
  return i != j.end() && i->is_number() ? i->get<double>() : 0.0;
}
std::string count(const json& j, const char* k) {
  const auto i = j.find(k);
  return i != j.end() && i->is_number_integer() ? i->dump() : "?";
}
const json& member(const json& j, const char* k) {
  static const json none;
  const auto i = j.find(k);
  return i != j.end() ? *i : none;
}

std::string fixed(double v, int decimals) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

/// 12.5s, 3m 12s, 4h 3m, 2d 4h.
std::string uptime(double s) {
  const auto t = static_cast<long long>(s);
  if (s < 60) return fixed(s, 1) + "s";
  if (t < 3600) return std::to_string(t / 60) + "m " + std::to_string(t % 60) + "s";
  if (t < 86400) return std::to_string(t / 3600) + "h " + std::to_string(t / 60 % 60) + "m";
  return std::to_string(t / 86400) + "d " + std::to_string(t / 3600 % 24) + "h";
}

/// "crash (signal 9, interpreter_exited)", "normal (code 0)", "none".
std::string last_exit(const json& e) {
  if (!e.is_object()) return "none";
  std::string out = str(e, "kind");
  std::string detail;
  if (num(e, "signal") != 0) {
    detail = "signal " + count(e, "signal");
  } else if (num(e, "code") >= 0) {
    detail = "code " + count(e, "code");
  }
  if (const std::string err = str(e, "error"); !err.empty()) {
    detail += (detail.empty() ? "" : ", ") + err;
  }
  return detail.empty() ? out : out + " (" + detail + ")";
}

void print_pool(std::string& out, const json& p, const std::string& indent) {
  const json& tenant = member(p, "tenant");
  out += indent + str(p, "name") + " (pool, tenant " +
         (tenant.is_string() ? tenant.get<std::string>() : std::string("none")) +
         "): " + count(p, "ready") + "/" + count(p, "workers") + " ready, " +
         count(p, "in_flight") + " in flight, " + count(p, "queued") + " queued, " +
         count(p, "served") + " served, " + count(p, "restarts") + " restarts";
  if (member(p, "breaker_open") == true) out += ", breaker OPEN";
  const json& errors = member(p, "errors");
  if (errors.is_object() && !errors.empty()) {
    std::string list;
    for (const auto& [code, n] : errors.items()) list += (list.empty() ? "" : ", ") + code + " " + n.dump();
    out += "; errors: " + list;
  }
  out += "\n";
  const json& workers = member(p, "per_worker");
  if (!workers.is_array()) return;
  for (const json& w : workers) {
    out += indent + "  " + str(w, "id") + ": pid " + count(w, "pid") + ", " + str(w, "state") +
           ", " + count(w, "restarts") + " restarts, last exit " +
           last_exit(member(w, "last_exit")) + ", " +
           fixed(num(w, "rss_bytes") / (1024.0 * 1024.0), 1) + " MiB\n";
  }
}

/// The pool named `name` in the document's "pools", or nullptr.
const json* find_pool(const json& doc, const std::string& name) {
  const json& pools = member(doc, "pools");
  if (!pools.is_array()) return nullptr;
  for (const json& p : pools) {
    if (str(p, "name") == name) return &p;
  }
  return nullptr;
}

void print_node(std::string& out, const json& doc, const json& node, const std::string& indent) {
  const std::string name = str(node, "name");
  if (str(node, "kind") == "pool") {
    if (const json* p = find_pool(doc, name)) {
      print_pool(out, *p, indent);
    } else {
      out += indent + name + " (pool, not running)\n";
    }
    return;
  }
  out += indent + name + " (" + str(node, "kind") + ")\n";
  const json& children = member(node, "children");
  if (!children.is_array()) return;
  for (const json& c : children) print_node(out, doc, c, indent + "  ");
}

std::string render(const json& doc, const std::string& url) {
  std::string out = "daemon " + url + ": pyvisor " + str(doc, "version") + ", pid " +
                    count(doc, "pid") + ", up " + uptime(num(doc, "uptime_s")) + ", config " +
                    str(doc, "config") + ", " + count(doc, "reloads") + " reloads\n";
  print_node(out, doc, member(doc, "tree"), "");
  if (const json& gw = member(doc, "gateway"); gw.is_object()) {
    out += "gateway: " + count(gw, "connections") + " open connections (this one included), " +
           count(gw, "sessions") + " sessions\n";
  }
  if (member(doc, "ready") == true) {
    out += "ready\n";
  } else {
    std::string waiting;
    const json& pools = member(doc, "pools");
    if (pools.is_array()) {
      for (const json& p : pools) {
        if (num(p, "ready") == 0) waiting += (waiting.empty() ? "" : ", ") + str(p, "name");
      }
    }
    out += "not ready" + (waiting.empty() ? std::string() : ": no ready worker in " + waiting) +
           "\n";
  }
  return out;
}

int run_status(const status_args& a) {
  client c(a.conn, std::chrono::seconds(30));
  const answer ans = c.get("/v1/status");
  if (const json* err = ans.error()) {
    print_error(*err, a.json);
    return exit_error;
  }
  const bool ready = member(ans.body, "ready") == true;
  const std::string text = a.json ? dump_json(ans.body) + "\n" : render(ans.body, c.url());
  if (!write_stdout(text)) return exit_error;
  return ready ? exit_ok : exit_not_ready;
}

} // namespace

command_runner add_status_command(CLI::App& app) {
  auto args = std::make_shared<status_args>();
  CLI::App* cmd =
      app.add_subcommand("status", "show the daemon's pools, workers and readiness");
  cmd->footer(std::string(status_footer));
  add_connect_options(cmd, args->conn);
  cmd->add_flag("--json", args->json, "print the status document (or an error object) as JSON")
      ->disable_flag_override();
  return [args] { return run_status(*args); };
}

} // namespace pyvisor::cli
