// `pyvisor check FILE [--json]`: loads and validates a config file; prints its problems, or
// the deployment it describes with every setting after defaults. See cli/README.md.

#include <algorithm>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "commands.hpp"
#include "gateway/json_value.hpp"
#include "pyvisor/config.hpp"
#include "pyvisor/runtime_spec.hpp"
#include "pyvisor/venv.hpp"

namespace pyvisor::cli {
namespace {

struct check_args {
  std::string file;
  bool json = false;
};

const char* name_of(restart_strategy s) {
  switch (s) {
    case restart_strategy::one_for_one: return "one_for_one";
    case restart_strategy::one_for_all: return "one_for_all";
    case restart_strategy::rest_for_one: return "rest_for_one";
  }
  return "?";
}

const char* name_of(restart_type t) {
  switch (t) {
    case restart_type::permanent: return "permanent";
    case restart_type::transient: return "transient";
    case restart_type::temporary: return "temporary";
  }
  return "?";
}

const char* name_of(dispatch_policy d) {
  switch (d) {
    case dispatch_policy::least_loaded: return "least_loaded";
    case dispatch_policy::round_robin: return "round_robin";
    case dispatch_policy::key_affinity: return "key_affinity";
  }
  return "?";
}

const char* name_of(sandbox_kind k) {
  switch (k) {
    case sandbox_kind::none: return "none";
    case sandbox_kind::bwrap: return "bwrap";
  }
  return "?";
}

json optional_size(const std::optional<std::uint64_t>& v) {
  return v ? json(*v) : json(nullptr);
}

std::size_t max_workers(const pool_options& o) {
  return std::max(o.workers, o.autoscale.max_workers);
}

// ---------------------------------------------------------------------------------------------
// The tree as a document
// ---------------------------------------------------------------------------------------------

json tenant_doc(const tenant_spec& t) {
  json d = json::object();
  d["name"] = t.name;
  if (t.venv) {
    const venv_state st = check_venv(*t.venv);
    d["python"] = venv_python(*t.venv);
    d["venv"] = {{"path", t.venv->path},
                 {"python", t.venv->python},
                 {"system_site_packages", t.venv->system_site_packages},
                 {"requirements", t.venv->requirements},
                 {"state", std::string(to_string(st.kind))},
                 {"detail", st.detail}};
  } else {
    d["python"] = t.python;
    d["venv"] = nullptr;
  }
  d["python_version"] = t.python_version.empty() ? json(nullptr) : json(t.python_version);
  const resource_limits& l = t.limits;
  d["limits"] = {{"memory", optional_size(l.memory)},       {"cpu_seconds", optional_size(l.cpu_seconds)},
                 {"open_files", optional_size(l.open_files)}, {"file_size", optional_size(l.file_size)},
                 {"processes", optional_size(l.processes)},   {"core", optional_size(l.core)}};
  d["identity"] = {{"user", t.identity.user.empty() ? json(nullptr) : json(t.identity.user)},
                   {"group", t.identity.group.empty() ? json(nullptr) : json(t.identity.group)}};
  const sandbox_policy& s = t.sandbox;
  d["sandbox"] = {{"kind", name_of(s.kind)},     {"network", s.network},
                  {"work_dir", s.work_dir},      {"read_only", s.read_only},
                  {"seccomp", s.seccomp},
                  {"deny", s.seccomp ? (s.deny.empty() ? default_seccomp_deny() : s.deny)
                                     : std::vector<std::string>{}}};
  d["pools"] = json::array();
  return d;
}

json pool_doc(const pool_spec& p, const tenant_spec* tenant) {
  const pool_options& o = p.options;
  json d = json::object();
  d["name"] = o.name;
  d["tenant"] = p.tenant.empty() ? json(nullptr) : json(p.tenant);
  const bool autoscaled = o.autoscale.max_workers > 0;
  d["size"] = {{"workers", o.workers},
               {"min", autoscaled ? o.autoscale.min_workers : o.workers},
               {"max", max_workers(o)},
               {"min_ready", o.min_ready ? *o.min_ready : o.workers}};
  d["dispatch"] = name_of(o.dispatch);
  d["restart"] = name_of(p.restart);
  d["timeouts"] = {{"default", format_duration(o.worker.default_timeout)},
                   {"init", format_duration(o.worker.init_script_timeout)},
                   {"queue", o.queue_timeout ? json(format_duration(*o.queue_timeout)) : json(nullptr)}};
  d["time_limits"] = {{"soft", format_duration(o.limits.soft)},
                      {"hard", format_duration(o.limits.hard)}};
  d["recycle"] = {{"max_requests", o.recycle.max_requests},
                  {"max_requests_jitter", o.recycle.max_requests_jitter},
                  {"max_rss", o.recycle.max_rss_bytes},
                  {"max_idle", format_duration(o.recycle.max_idle)}};
  d["heartbeat"] = {{"interval", format_duration(o.heartbeat.interval)},
                    {"timeout", format_duration(o.heartbeat.timeout)}};
  std::optional<std::uint64_t> per_worker;
  if (p.memory_budget) {
    per_worker = *p.memory_budget / std::max<std::size_t>(max_workers(o), 1);
  } else if (tenant != nullptr && tenant->limits.memory) {
    per_worker = tenant->limits.memory;
  }
  d["memory_budget"] = optional_size(p.memory_budget);
  d["memory_per_worker"] = optional_size(per_worker);
  d["workers"] = json::array();
  for (std::size_t k = 1; k <= max_workers(o); ++k) {
    d["workers"].push_back(o.name + "-w" + std::to_string(k));
  }
  return d;
}

/// The supervision tree under the implicit root (iterative: configs may nest deeply).
json supervision_doc(const runtime_spec& spec) {
  const auto node_doc = [&](const std::string& name, const supervisor_node* n) {
    json d = json::object();
    d["name"] = name;
    d["kind"] = "supervisor";
    const supervisor_defaults& def = spec.supervisor;
    d["strategy"] = name_of(n && n->strategy ? *n->strategy : def.strategy);
    d["intensity"] = n && n->intensity ? *n->intensity : def.intensity;
    d["period"] = format_duration(n && n->period ? *n->period : def.period);
    d["children"] = json::array();
    return d;
  };
  const auto find_supervisor = [&](const std::string& name) -> const supervisor_node* {
    for (const auto& s : spec.supervisors) {
      if (s.name == name) return &s;
    }
    return nullptr;
  };
  const auto is_pool = [&](const std::string& name) {
    return std::any_of(spec.pools.begin(), spec.pools.end(),
                       [&](const pool_spec& p) { return p.options.name == name; });
  };
  json root = node_doc("root", nullptr);
  // (document to fill, its children's names); documents live in their parents' arrays,
  // which are complete before the next level is filled.
  std::vector<std::pair<json*, std::vector<std::string>>> todo{{&root, root_children(spec)}};
  while (!todo.empty()) {
    auto [doc, names] = std::move(todo.back());
    todo.pop_back();
    for (const std::string& child : names) {
      if (const supervisor_node* n = find_supervisor(child)) {
        (*doc)["children"].push_back(node_doc(child, n));
      } else {
        json leaf = {{"name", child}, {"kind", is_pool(child) ? "pool" : "unknown"}};
        (*doc)["children"].push_back(std::move(leaf));
      }
    }
    auto& kids = (*doc)["children"];
    for (std::size_t k = 0; k < names.size(); ++k) {
      if (const supervisor_node* n = find_supervisor(names[k])) {
        todo.emplace_back(&kids[k], n->children);
      }
    }
  }
  return root;
}

json tree_doc(const runtime_spec& spec, const std::string& file) {
  json tree = json::object();
  tree["file"] = file;
  tree["runtime"] = {{"threads", spec.runtime.threads},
                     {"log_level", spec.runtime.log_level},
                     {"log_format", spec.runtime.log_format}};
  tree["tenants"] = json::array();
  for (const tenant_spec& t : spec.tenants) tree["tenants"].push_back(tenant_doc(t));
  // Pools without a tenant run the host's python3 without isolation.
  json host = tenant_doc(tenant_spec{});
  host["name"] = nullptr;
  for (const pool_spec& p : spec.pools) {
    auto& tenants = tree["tenants"];
    const auto it = std::find_if(spec.tenants.begin(), spec.tenants.end(),
                                 [&](const tenant_spec& t) { return t.name == p.tenant; });
    if (p.tenant.empty() || it == spec.tenants.end()) {
      host["pools"].push_back(pool_doc(p, nullptr));
    } else {
      tenants[static_cast<std::size_t>(it - spec.tenants.begin())]["pools"].push_back(
          pool_doc(p, &*it));
    }
  }
  if (!host["pools"].empty()) tree["tenants"].push_back(std::move(host));
  tree["supervision"] = supervision_doc(spec);
  return tree;
}

// ---------------------------------------------------------------------------------------------
// The tree as text
// ---------------------------------------------------------------------------------------------

std::string text_of(const json& v) {
  if (v.is_null()) return "-";
  if (v.is_string()) return v.get<std::string>();
  return dump_json(v);
}

std::string size_text(const json& v) {
  return v.is_null() ? "unlimited" : format_size(v.get<std::uint64_t>());
}

void render_tenant(std::string& out, const json& t) {
  out += t["name"].is_null() ? std::string("(no tenant: host python, no isolation)")
                             : "tenant " + t["name"].get<std::string>();
  out += "\n  python: " + text_of(t["python"]);
  if (!t["python_version"].is_null()) out += " (version " + text_of(t["python_version"]) + ")";
  out += "\n";
  if (const json& v = t["venv"]; !v.is_null()) {
    out += "  venv: " + text_of(v["path"]) + " from " + text_of(v["python"]) +
           (v["system_site_packages"].get<bool>() ? ", system site packages" : "") + ", " +
           std::to_string(v["requirements"].size()) +
           (v["requirements"].size() == 1 ? " requirement, " : " requirements, ") +
           text_of(v["state"]);
    if (!v["detail"].get<std::string>().empty()) out += " (" + text_of(v["detail"]) + ")";
    out += "\n";
  }
  std::string limits;
  for (const auto& [key, value] : t["limits"].items()) {
    if (value.is_null()) continue;
    const bool bytes = key == "memory" || key == "file_size" || key == "core";
    limits += (limits.empty() ? "" : ", ") + key + " " +
              (bytes ? size_text(value) : text_of(value));
  }
  out += "  limits: " + (limits.empty() ? std::string("none") : limits) + "\n";
  const json& id = t["identity"];
  out += "  identity: " +
         (id["user"].is_null() && id["group"].is_null()
              ? std::string("the host's")
              : "user " + text_of(id["user"]) + ", group " + text_of(id["group"])) +
         "\n";
  const json& s = t["sandbox"];
  out += "  sandbox: " + text_of(s["kind"]);
  if (s["kind"] == "bwrap") {
    out += std::string(", network ") + (s["network"].get<bool>() ? "on" : "off");
    if (!s["work_dir"].get<std::string>().empty()) out += ", work_dir " + text_of(s["work_dir"]);
  }
  if (s["seccomp"].get<bool>()) out += ", seccomp (" + std::to_string(s["deny"].size()) + " denied)";
  out += "\n";
  for (const json& p : t["pools"]) {
    const json& size = p["size"];
    out += "  pool " + text_of(p["name"]) + ": ";
    out += size["min"] == size["max"]
               ? text_of(size["workers"]) + (size["workers"] == 1 ? " worker" : " workers")
                                      : text_of(size["min"]) + ".." + text_of(size["max"]) +
                                            " workers (starts " + text_of(size["workers"]) + ")";
    out += ", dispatch " + text_of(p["dispatch"]) + ", restart " + text_of(p["restart"]) + "\n";
    const json& to = p["timeouts"];
    out += "    timeouts: default " + text_of(to["default"]) + ", init " + text_of(to["init"]) +
           ", queue " + (to["queue"].is_null() ? std::string("none") : text_of(to["queue"])) + "\n";
    out += "    time limits: soft " + text_of(p["time_limits"]["soft"]) + ", hard " +
           text_of(p["time_limits"]["hard"]) + "\n";
    const json& rc = p["recycle"];
    out += "    recycle: max_requests " + text_of(rc["max_requests"]) + " (+" +
           text_of(rc["max_requests_jitter"]) + "), max_rss " +
           (rc["max_rss"] == 0 ? std::string("off") : format_size(rc["max_rss"].get<std::uint64_t>())) +
           ", max_idle " + text_of(rc["max_idle"]) + "\n";
    out += "    heartbeat: every " + text_of(p["heartbeat"]["interval"]) + ", timeout " +
           text_of(p["heartbeat"]["timeout"]) + "\n";
    out += "    memory per worker: " + size_text(p["memory_per_worker"]);
    if (!p["memory_budget"].is_null()) out += " (budget " + size_text(p["memory_budget"]) + ")";
    out += "\n    workers:";
    for (const json& w : p["workers"]) out += " " + text_of(w);
    out += "\n";
  }
}

std::string render_tree(const json& tree) {
  std::string out = "config " + text_of(tree["file"]) + ": ok\n";
  for (const json& t : tree["tenants"]) render_tenant(out, t);
  out += "supervision:\n";
  // (node, indentation) depth first, in order.
  std::vector<std::pair<const json*, std::size_t>> stack{{&tree["supervision"], 1}};
  while (!stack.empty()) {
    const auto [node, indent] = stack.back();
    stack.pop_back();
    out += std::string(2 * indent, ' ') + text_of((*node)["name"]);
    if ((*node)["kind"] == "supervisor") {
      out += " (supervisor " + text_of((*node)["strategy"]) + ", intensity " +
             text_of((*node)["intensity"]) + " in " + text_of((*node)["period"]) + ")\n";
      const json& kids = (*node)["children"];
      for (std::size_t k = kids.size(); k-- > 0;) stack.emplace_back(&kids[k], indent + 1);
    } else {
      out += " (" + text_of((*node)["kind"]) + ")\n";
    }
  }
  return out;
}

int run_check(const check_args& a) {
  const config_result r = load_config(a.file);
  if (!r.ok()) {
    if (a.json) {
      json problems = json::array();
      for (const config_problem& p : r.problems) {
        problems.push_back({{"file", p.file},
                            {"line", p.line},
                            {"column", p.column},
                            {"path", p.path},
                            {"message", p.message}});
      }
      (void)write_stdout(dump_json({{"ok", false}, {"problems", std::move(problems)}}) + "\n");
    } else {
      std::string out;
      for (const config_problem& p : r.problems) out += p.to_string() + "\n";
      if (r.problems.empty()) out += a.file + ": invalid config\n";
      write_all(stderr, out);
    }
    return exit_error;
  }
  const json tree = tree_doc(*r.spec, a.file);
  const std::string text =
      a.json ? dump_json({{"ok", true}, {"tree", tree}}) + "\n" : render_tree(tree);
  return write_stdout(text) ? exit_ok : exit_error;
}

} // namespace

command_runner add_check_command(CLI::App& app) {
  auto args = std::make_shared<check_args>();
  CLI::App* cmd = app.add_subcommand(
      "check", "validate a config file and print the deployment it describes");
  cmd->footer(
      "Loads and validates the config FILE. Problems: one 'file:line:col: message' line each "
      "on stderr, exit 1. Valid: the tenants, their pools and workers with every setting after "
      "defaults, and the supervision tree under the implicit root, on stdout, exit 0.");
  cmd->add_option("FILE", args->file, "the config file (TOML)")->required();
  cmd->add_flag("--json", args->json,
                "print {\"ok\": true, \"tree\": {...}} or {\"ok\": false, \"problems\": [...]} "
                "on stdout instead")
      ->disable_flag_override();
  return [args] { return run_check(*args); };
}

} // namespace pyvisor::cli
