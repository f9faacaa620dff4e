#pragma once

/// The whole deployment as data: tenants, pools and the supervision tree over them. A config
/// file (pyvisor/config.hpp, config/pyvisor.toml) is loaded into a runtime_spec; C++ code may
/// build one directly. runtime::deploy starts it. Durations follow interpreter_options.hpp.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "pyvisor/isolation.hpp"
#include "pyvisor/pool_options.hpp"
#include "pyvisor/supervision.hpp"

namespace pyvisor {

/// `[runtime]`.
struct runtime_settings {
  std::size_t threads = 0;          ///< CAF scheduler threads; 0 = CAF's default
  std::string log_level = "info";   ///< debug | info | warning | error
  std::string log_format = "text";  ///< text | json
  /// `pyvisor serve`: the HTTP gateway's "HOST:PORT" ("" = no HTTP). Anything but a loopback
  /// address requires `[gateway] tokens_file`.
  std::string http_listen = "127.0.0.1:4270";
  /// `pyvisor serve` on SIGTERM/SIGINT: how long requests in flight may take to finish before
  /// the tree is stopped anyway.
  std::chrono::milliseconds shutdown_grace = 30s;
};

/// `[gateway]`: the daemon's HTTP gateway (docs/http.md).
struct gateway_settings {
  /// Bearer tokens, one per line: "TOKEN [tenant:NAME|pool:NAME|*]..." (docs/http.md). "" =
  /// no authentication (allowed only on loopback addresses).
  std::string tokens_file;
  std::string tls_cert;  ///< PEM certificate chain; with tls_key, the gateway speaks HTTPS
  std::string tls_key;   ///< PEM private key
  std::uint64_t max_body = 16ull << 20;   ///< largest request body; larger: 413
  std::size_t max_connections = 128;      ///< open connections; more are answered 503 and closed
  std::chrono::milliseconds read_timeout = 10s;  ///< a request's headers and body (slowloris)
  std::chrono::milliseconds write_timeout = 10s; ///< writing a response
  std::chrono::milliseconds idle_timeout = 5s;   ///< a keep-alive connection with no request
  std::chrono::milliseconds session_idle_ttl = 5min;      ///< a session unused this long ends
  std::chrono::milliseconds session_max_lifetime = 1h;    ///< a session ends this long after creation
  std::size_t max_sessions = 1024;  ///< open sessions; more: 429
};

/// `[supervisor]`: defaults of every supervisor in the tree (and of the implicit root).
struct supervisor_defaults {
  restart_strategy strategy = restart_strategy::one_for_one;
  int intensity = 1;
  std::chrono::milliseconds period = 5s;
  backoff_policy backoff;
};

/// A declarative virtual environment (`[tenants.NAME.venv]`), made by `pyvisor env sync`.
struct venv_spec {
  std::string path;                   ///< the venv directory
  std::string python = "python3";     ///< the interpreter that creates it
  bool system_site_packages = false;  ///< `python -m venv --system-site-packages`
  /// pip requirement specifiers or local paths (wheels, directories). `env sync` installs them
  /// and writes a stamp of this list; a venv whose stamp differs is stale.
  std::vector<std::string> requirements;
};

/// What the child's environment holds: nothing of the host's but the names in `inherit`, plus
/// `set`. LD_* and PYTHON* are inherited only when named here.
struct environment_policy {
  std::vector<std::string> inherit{"PATH", "LANG", "LC_ALL", "TZ"};
  std::vector<std::pair<std::string, std::string>> set;
};

/// `[tenants.NAME]`: one isolation boundary (a customer, a team, a model).
struct tenant_spec {
  std::string name;
  std::string python = "python3";  ///< the interpreter, unless `venv` is set
  std::optional<venv_spec> venv;
  /// Required "MAJOR.MINOR" (e.g. "3.11"), checked at start; empty: any supported (>= 3.8).
  std::string python_version;
  environment_policy environment;
  resource_limits limits;
  pyvisor::identity identity;
  sandbox_policy sandbox;
  /// Names of the runtime's exposed functions this tenant's Python may call; unset: all.
  std::optional<std::vector<std::string>> host_functions;
};

/// A durable env a pool creates when it starts (`[[pools.NAME.envs]]`).
struct durable_env_spec {
  std::string name;
  std::string init;  ///< code run in the fresh env (also after a rebuild)
  std::string key;   ///< routing key (pool key affinity); empty: the env's name
};

/// `[pools.NAME]`: a pool of one tenant's interpreters.
struct pool_spec {
  /// The pool's options; options.name is the pool's name. options.worker.python,
  /// .isolation, .environment and .allowed_host_functions come from the tenant.
  pool_options options;
  std::string tenant;  ///< a tenant's name; empty: the host's python3, no isolation
  /// A file whose contents become the init script (instead of options.worker.init_script.code).
  std::string init_file;
  std::vector<std::string> preload;  ///< modules imported at start, after the init script
  /// The pool's address-space budget, split evenly over its largest worker count (PySpark's
  /// executor memory); replaces the tenant's per-process `memory` limit when set.
  std::optional<std::uint64_t> memory_budget;
  std::vector<durable_env_spec> envs;
  restart_type restart = restart_type::permanent;  ///< as a child of its supervisor
};

/// `[supervisors.NAME]`: a node of the tree; children name pools and other supervisors.
/// Unset settings take `[supervisor]`'s.
struct supervisor_node {
  std::string name;
  std::optional<restart_strategy> strategy;
  std::optional<int> intensity;
  std::optional<std::chrono::milliseconds> period;
  std::optional<backoff_policy> backoff;
  std::vector<std::string> children;
};

/// Everything a config file declares. Pools and supervisors no supervisor names as a child
/// hang under the implicit root supervisor "root", in declaration order.
struct runtime_spec {
  runtime_settings runtime;
  gateway_settings gateway;
  supervisor_defaults supervisor;
  std::vector<tenant_spec> tenants;
  std::vector<pool_spec> pools;
  std::vector<supervisor_node> supervisors;
};

} // namespace pyvisor
