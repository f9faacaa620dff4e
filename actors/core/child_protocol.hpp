#pragma once

/// The messages between a supervisor and its children (docs/architecture.md, supervision).
/// A child is a long-lived actor that runs one incarnation at a time (an interpreter: one
/// Python process; a nested supervisor: one run of its children) and survives its ends, so the
/// handles pointing at it stay valid:
///
/// | supervisor -> child                         | meaning                                      |
/// |---------------------------------------------|----------------------------------------------|
/// | (child_start_atom)                          | start an incarnation                         |
/// | (child_stop_atom, shutdown_policy)          | end the running incarnation (graceful/brutal)|
/// | exit message (user_shutdown)                | end for good: stop, then quit                |
///
/// | child -> supervisor                         | meaning                                      |
/// |---------------------------------------------|----------------------------------------------|
/// | (child_up_atom, actor_addr self, int pid)   | the incarnation is up (interpreter: ready)   |
/// | (child_down_atom, actor_addr self, report)  | the incarnation ended (exactly once a start) |
///
/// Every child_start is answered by exactly one child_down, possibly after one child_up.

#include <caf/atom.hpp>
#include <caf/meta/type_name.hpp>

#include "pyvisor/actor_interface.hpp"
#include "pyvisor/supervision.hpp"

namespace pyvisor::core {

using child_start_atom = caf::atom_constant<caf::atom("c_start")>;
using child_stop_atom = caf::atom_constant<caf::atom("c_stop")>;
using child_up_atom = caf::atom_constant<caf::atom("c_up")>;
using child_down_atom = caf::atom_constant<caf::atom("c_down")>;

} // namespace pyvisor::core

namespace pyvisor {

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, shutdown_policy& x) {
  return f(caf::meta::type_name("pyvisor::shutdown_policy"), x.brutal_kill, x.grace);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, exit_report& x) {
  return f(caf::meta::type_name("pyvisor::exit_report"), x.kind, x.code, x.signal, x.reason);
}

template <class Inspector>
typename Inspector::result_type inspect(Inspector& f, supervision_event& x) {
  return f(caf::meta::type_name("pyvisor::supervision_event"), x.kind, x.supervisor, x.child,
           x.pid, x.report, x.delay);
}

} // namespace pyvisor
