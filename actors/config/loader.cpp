// load_config / load_config_string: TOML -> runtime_spec, then validate() on the result with
// the positions of the keys its problems name. Every problem is reported, in file order.
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

#include "config/reader.hpp"

namespace pyvisor {
namespace config_detail {
namespace {

void read_runtime(table_reader& root, runtime_spec& spec) {
  if (auto t = root.table("runtime")) {
    t->integer("threads", spec.runtime.threads);
    t->string("log_level", spec.runtime.log_level);
    t->string("log_format", spec.runtime.log_format);
    t->string("http_listen", spec.runtime.http_listen);
    t->duration("shutdown_grace", spec.runtime.shutdown_grace);
    t->finish();
  }
  if (auto t = root.table("gateway")) {
    auto& g = spec.gateway;
    t->path("tokens_file", g.tokens_file);
    t->path("tls_cert", g.tls_cert);
    t->path("tls_key", g.tls_key);
    t->size("max_body", g.max_body);
    t->integer("max_connections", g.max_connections);
    t->duration("read_timeout", g.read_timeout);
    t->duration("write_timeout", g.write_timeout);
    t->duration("idle_timeout", g.idle_timeout);
    t->duration("session_idle_ttl", g.session_idle_ttl);
    t->duration("session_max_lifetime", g.session_max_lifetime);
    t->integer("max_sessions", g.max_sessions);
    t->finish();
  }
  if (auto t = root.table("supervisor")) {
    auto& s = spec.supervisor;
    t->choice("strategy", s.strategy, strategy_names());
    t->integer("intensity", s.intensity);
    t->duration("period", s.period);
    if (auto b = t->table("backoff"))
      read_backoff(*b, s.backoff);
    t->finish();
  }
}

void read_supervisor_node(table_reader& r, const supervisor_defaults& defaults,
                          supervisor_node& n) {
  r.choice("strategy", n.strategy, strategy_names());
  r.integer("intensity", n.intensity);
  r.duration("period", n.period);
  // A node's backoff table starts from [supervisor.backoff]: keys it leaves out are those.
  if (auto b = r.table("backoff")) {
    backoff_policy policy = defaults.backoff;
    read_backoff(*b, policy);
    n.backoff = policy;
  }
  r.strings("children", n.children);
  r.finish();
}

runtime_spec read_document(load_context& ctx, const toml::table& doc) {
  runtime_spec spec;
  table_reader root{ctx, doc, ""};
  read_runtime(root, spec);
  for (auto& e : named_tables(root, "tenants")) {
    tenant_spec t;
    t.name = e.name;
    table_reader r{ctx, *e.table, join("tenants", e.name)};
    read_tenant(r, t);
    spec.tenants.push_back(std::move(t));
  }
  for (auto& e : named_tables(root, "pools")) {
    pool_spec p;
    p.options.name = e.name;
    table_reader r{ctx, *e.table, join("pools", e.name)};
    read_pool(r, p);
    spec.pools.push_back(std::move(p));
  }
  for (auto& e : named_tables(root, "supervisors")) {
    supervisor_node n;
    n.name = e.name;
    table_reader r{ctx, *e.table, join("supervisors", e.name)};
    read_supervisor_node(r, spec.supervisor, n);
    spec.supervisors.push_back(std::move(n));
  }
  root.finish();
  return spec;
}

std::string absolute_dir(const std::string& dir) {
  std::error_code ec;
  auto p = dir.empty() ? std::filesystem::current_path(ec) : std::filesystem::absolute(dir, ec);
  return p.lexically_normal().string();
}

} // namespace
} // namespace config_detail

config_result load_config_string(std::string_view text, std::string name, std::string base_dir) {
  using namespace config_detail;
  config_result result;
  problem_sink sink;
  source_map positions;
  load_context ctx{sink, positions, absolute_dir(base_dir)};

  toml::table doc;
  try {
    doc = toml::parse(text, name);
  } catch (const toml::parse_error& e) {
    const auto& b = e.source().begin;
    config_problem p;
    p.file = name;
    p.line = static_cast<int>(b.line);
    p.column = static_cast<int>(b.column);
    p.message = std::string{e.description()};
    result.problems.push_back(std::move(p));
    return result;
  }

  runtime_spec spec = read_document(ctx, doc);
  // The same rules as validate(), positioned at the key each problem names.
  // A key that could not be read keeps its default, which may break a rule: such follow-up
  // problems at (or under) a key with a reading problem are dropped.
  std::set<std::string> unread;
  for (const auto& p : sink.list)
    unread.insert(p.path);
  problem_sink rules;
  validate_into(spec, rules);
  for (auto& p : rules.list) {
    bool follow_up = false;
    for (std::string at = p.path; !at.empty() && !follow_up; at = parent_of(at))
      follow_up = unread.count(at) > 0;
    if (follow_up)
      continue;
    std::tie(p.line, p.column) = positions.find(p.path);
    sink.list.push_back(std::move(p));
  }
  for (auto& p : sink.list)
    p.file = name;
  std::stable_sort(sink.list.begin(), sink.list.end(),
                   [](const config_problem& a, const config_problem& b) {
                     return std::make_tuple(a.line == 0, a.line, a.column) <
                            std::make_tuple(b.line == 0, b.line, b.column);
                   });
  result.problems = std::move(sink.list);
  if (result.problems.empty())
    result.spec = std::move(spec);
  return result;
}

config_result load_config(const std::string& path) {
  auto fail = [&](std::string why) {
    config_result result;
    config_problem p;
    p.file = path;
    p.message = "cannot read the file: " + why;
    result.problems.push_back(std::move(p));
    return result;
  };
  std::error_code dir_ec;
  if (std::filesystem::is_directory(path, dir_ec))
    return fail("it is a directory");
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return fail(std::strerror(errno));
  std::ostringstream text;
  text << in.rdbuf();
  std::error_code ec;
  auto dir = std::filesystem::absolute(path, ec).lexically_normal().parent_path();
  return load_config_string(text.str(), path, dir.string());
}

} // namespace pyvisor
