#pragma once

/// Declarative virtual environments (`[tenants.NAME.venv]`, pyvisor/runtime_spec.hpp): checking
/// whether a venv matches its spec, and making it match (`pyvisor env sync CONFIG`).
///
/// A synced venv holds a stamp file (venv_stamp_file) with a hash of what made it: the
/// creating interpreter and `system_site_packages` (the base) and the requirement list. The
/// stamp is written only after every step succeeded, so an interrupted sync leaves the venv
/// stale, never falsely up to date.

#include <functional>
#include <string>
#include <string_view>

#include "pyvisor/expected.hpp"
#include "pyvisor/runtime_spec.hpp"

namespace pyvisor {

/// Where the stamp lives, relative to the venv directory.
inline constexpr std::string_view venv_stamp_file = ".pyvisor-venv-stamp";

/// How a venv on disk compares with its spec.
struct venv_state {
  enum kind_t {
    up_to_date,  ///< the venv exists and its stamp matches the spec
    missing,     ///< no venv at the path (no `bin/python` there)
    stale,       ///< a venv without a stamp, or whose stamp differs from the spec
  } kind = missing;
  std::string detail;  ///< why, e.g. "no /srv/venvs/web/bin/python", "requirements changed"
};

/// "up_to_date", "missing", "stale".
std::string_view to_string(venv_state::kind_t k) noexcept;

/// Compares the venv at spec.path with the spec (reads the file system; never throws).
venv_state check_venv(const venv_spec& spec);

/// The venv's interpreter: `<path>/bin/python`.
std::string venv_python(const venv_spec& spec);

/// The stamp text a venv synced from `spec` holds.
std::string venv_stamp(const venv_spec& spec);

/// Receives one line of progress (no trailing newline).
using venv_progress = std::function<void(std::string_view line)>;

/// Makes the venv match `spec`; `name` labels the progress lines ("venv NAME: ..."; empty: the
/// path). Up to date: only reports "venv NAME: up to date". Otherwise:
/// - missing: `<python> -m venv [--system-site-packages] PATH` ("creating PATH"); a venv whose
///   python or system_site_packages changed is recreated the same way with `--clear`
///   ("recreating PATH"),
/// - the requirements are installed ("installing N requirements") with
///   `PATH/bin/python -m pip install --disable-pip-version-check --no-input REQ...`, or with
///   `uv pip install --python PATH/bin/python REQ...` when `uv` is on PATH. Requirements
///   dropped from the list are not uninstalled (delete the venv to start over),
/// - the stamp is written ("up to date").
/// The tools' output is passed to `progress` line by line, indented. Failures: errc::spawn_failed
/// (a tool could not be started) or errc::config_error (a tool failed; the message ends with
/// the last lines of its output).
expected<void> sync_venv(const venv_spec& spec, std::string_view name,
                         const venv_progress& progress);
expected<void> sync_venv(const venv_spec& spec, const venv_progress& progress);

/// What to tell a user whose venv is missing or stale: "run `pyvisor env sync CONFIG`".
std::string venv_fix_hint(const std::string& config_path);

} // namespace pyvisor
