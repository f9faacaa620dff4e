#include "pyvisor/deployment.hpp"

#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "facade/runtime_impl.hpp"
#include "facade/tenant_options.hpp"
#include "pyvisor/config.hpp"

namespace pyvisor {

namespace detail {

/// What every copy of a deployment handle shares.
struct deployment_shared {
  std::shared_ptr<runtime::impl> rt;  // first member: destroyed last
  runtime_spec spec;                  // effective
  std::optional<pyvisor::supervisor> root;
  std::map<std::string, std::string, std::less<>> paths;  // pool name -> path in the tree
  std::mutex mu;
  std::map<std::pair<std::string, std::string>, env> envs;  // (pool, env name) -> env
};

} // namespace detail

namespace {

error config_problems(const std::vector<std::string>& lines) {
  std::string text = lines.size() == 1 ? "" : std::to_string(lines.size()) + " problems:\n";
  for (std::size_t i = 0; i < lines.size(); ++i)
    text += (i ? "\n" : "") + lines[i];
  return make_error(errc::config_error, text);
}

/// Builds the supervisor spec of node `name` (the root when null) and records pool paths.
struct tree_builder {
  const runtime_spec& spec;
  std::map<std::string, std::string, std::less<>>& paths;

  const pool_spec* pool(const std::string& n) const {
    for (auto& p : spec.pools)
      if (p.options.name == n)
        return &p;
    return nullptr;
  }
  const supervisor_node* node(const std::string& n) const {
    for (auto& s : spec.supervisors)
      if (s.name == n)
        return &s;
    return nullptr;
  }

  supervisor_spec build(const supervisor_node* n, const std::vector<std::string>& children,
                        const std::string& prefix) {
    supervisor_spec s;
    const auto& d = spec.supervisor;
    s.name = n ? n->name : "root";
    s.strategy = n && n->strategy ? *n->strategy : d.strategy;
    s.intensity = n && n->intensity ? *n->intensity : d.intensity;
    s.period = n && n->period ? *n->period : d.period;
    s.backoff = n && n->backoff ? *n->backoff : d.backoff;
    for (auto& c : children) {
      child_spec cs;
      cs.id = c;
      if (auto* p = pool(c)) {
        cs.pool = std::make_shared<pool_options>(p->options);
        cs.restart = p->restart;
        paths[c] = prefix + c;
      } else if (auto* sub = node(c)) {
        cs.supervisor =
          std::make_shared<supervisor_spec>(build(sub, sub->children, prefix + c + "/"));
      }
      s.children.push_back(std::move(cs));
    }
    return s;
  }
};

const tenant_spec* tenant_of(const runtime_spec& spec, const pool_spec& p) {
  for (auto& t : spec.tenants)
    if (!p.tenant.empty() && t.name == p.tenant)
      return &t;
  return nullptr;
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' '))
    s.pop_back();
  return s;
}

} // namespace

int log_rank(const log_record& r) noexcept {
  if (r.source == log_source::python_logging)
    return r.level >= 40 ? 3 : r.level >= 30 ? 2 : r.level >= 20 ? 1 : 0;
  return r.source == log_source::python_stderr ? 2 : 1;
}

runtime_options runtime_options_for(const runtime_settings& settings) {
  runtime_options o;
  o.scheduler_threads = settings.threads;
  int min = settings.log_level == "debug" ? 0 : settings.log_level == "warning" ? 2
            : settings.log_level == "error" ? 3 : 1;
  if (min > 1) {
    o.log = [min](const log_record& r) {
      if (log_rank(r) >= min)
        stderr_log_sink(r);
    };
  }
  return o;
}

expected<deployment> runtime::deploy(runtime_spec spec) {
  std::vector<std::string> problems;
  for (auto& p : validate(spec))
    problems.push_back(p.to_string());
  if (!problems.empty())
    return config_problems(problems);
  for (auto& p : spec.pools) {
    const tenant_spec* t = tenant_of(spec, p);  // validate() checked that it exists
    p.options = detail::resolve_pool(p, t, problems);
    if (auto e = check_interpreter_options(p.options.worker))
      problems.push_back("pool '" + p.options.name + "': " + e->message);
  }
  if (!problems.empty())
    return config_problems(problems);

  auto shared = std::make_shared<detail::deployment_shared>();
  shared->rt = impl_;
  tree_builder tb{spec, shared->paths};
  auto root_spec = tb.build(nullptr, root_children(spec), "");
  shared->spec = std::move(spec);
  auto root = impl_->supervise(std::move(root_spec));
  if (!root)
    return std::move(root).error();
  shared->root = *root;
  deployment d{shared};
  auto fail = [&](error e) -> expected<deployment> {
    (void)d.stop();
    return e;
  };

  for (auto& p : shared->spec.pools) {
    auto pl = d.find_pool(p.options.name);
    if (!pl)
      return fail(pl.error());
    const tenant_spec* t = tenant_of(shared->spec, p);
    if (t != nullptr && !t->python_version.empty()) {
      auto v = pl->eval("import sys\nreturn '%d.%d' % sys.version_info[:2]");
      if (!v)
        return fail(v.error());
      auto as_text = v->to<std::string>();
      std::string got = as_text ? *as_text : std::string{"?"};
      if (got != t->python_version)
        return fail(make_error(errc::config_error,
                               "tenant '" + t->name + "': python_version is " + t->python_version +
                                 " but pool '" + p.options.name + "' runs Python " + got));
    }
    for (auto& es : p.envs) {
      env_options eo;
      eo.durable = true;
      eo.key = es.key.empty() ? es.name : es.key;
      auto made = pl->make_env(eo);
      if (!made)
        return fail(made.error());
      if (!trim(es.init).empty()) {
        eval_options o;
        o.replay = true;
        o.file = "<env " + es.name + ">";
        auto r = made->eval(es.init, {}, o);
        if (!r) {
          auto e = r.error();
          e.message = "pool '" + p.options.name + "': env '" + es.name + "': " + e.message;
          return fail(e);
        }
      }
      std::lock_guard<std::mutex> g{shared->mu};
      shared->envs.emplace(std::make_pair(p.options.name, es.name), std::move(*made));
    }
  }
  return d;
}

deployment::deployment(std::shared_ptr<detail::deployment_shared> s) : s_(std::move(s)) {
}

expected<std::string> deployment::path_of(std::string_view name) const {
  auto i = s_->paths.find(name);
  if (i == s_->paths.end())
    return make_error(errc::invalid_argument, "no pool '" + std::string{name} + "'");
  return i->second;
}

expected<pool> deployment::find_pool(std::string_view name) const {
  auto path = path_of(name);
  if (!path)
    return std::move(path).error();
  return s_->root->child_pool(*path);
}

expected<env> deployment::find_env(std::string_view pool_name, std::string_view name) const {
  std::lock_guard<std::mutex> g{s_->mu};
  auto i = s_->envs.find(std::make_pair(std::string{pool_name}, std::string{name}));
  if (i == s_->envs.end())
    return make_error(errc::env_not_found, "no env '" + std::string{name} + "' in pool '" +
                                             std::string{pool_name} + "'");
  return i->second;
}

supervisor deployment::root() const {
  return *s_->root;
}

const runtime_spec& deployment::spec() const {
  return s_->spec;
}

expected<void> deployment::stop() {
  return s_->root->stop();
}

} // namespace pyvisor
