#pragma once

#include <string>
#include <sys/types.h>
#include <vector>

#include "pyvisor/isolation.hpp"

namespace pyvisor::process {

/// The command line that runs `inner` (an absolute argv[0]) in a bubblewrap sandbox
/// (sandbox_policy): read-only system directories (/usr, /bin, /sbin, /lib*, /etc; symlinks
/// stay symlinks), `read_only` and `needed` (the Python prefix, venv, runner dir) read-only
/// where they are not already inside those, a new /proc, /dev and private /tmp, `work_dir`
/// read-write as the working directory, its own PID, IPC, UTS, cgroup and (unless `network`)
/// network namespace, no capabilities, dying with its parent, the seccomp filter from
/// sandbox_seccomp_fd when `seccomp`. Inside, setsid(1) makes the Python process the leader
/// of its own process group (and session) before it execs: the host signals that group and
/// the process itself (SIGINT, SIGUSR2) by its host pid (find_sandboxed_python).
std::vector<std::string> bwrap_command(const isolation& iso, const std::vector<std::string>& needed,
                                       std::vector<std::string> inner);

/// The host pid of the process bwrap started (bwrap `bwrap_pid` -> its pid-1 init -> the
/// process that became its own process group leader), waited for up to `timeout_ms`. -1 when
/// bwrap ended first (its exit reports why), -2 on timeout.
pid_t find_sandboxed_python(pid_t bwrap_pid, int timeout_ms);

/// A Python binary's install prefix (`/usr` for `/usr/bin/python3`) and, when `python` names
/// a virtual environment's interpreter, that environment: the directories it needs to see.
std::vector<std::string> python_paths(const std::string& resolved, const std::string& given);

} // namespace pyvisor::process
