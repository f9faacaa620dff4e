#include "pyvisor/isolation.hpp"

namespace pyvisor {

const std::vector<std::string>& default_seccomp_deny() {
  static const std::vector<std::string> names{
    "ptrace", "process_vm_readv", "process_vm_writev", "mount", "umount2", "pivot_root",
    "swapon", "swapoff", "reboot", "kexec_load", "kexec_file_load", "init_module",
    "finit_module", "delete_module", "bpf", "perf_event_open", "userfaultfd", "keyctl",
    "add_key", "request_key", "unshare", "setns", "acct", "quotactl", "open_by_handle_at",
    "name_to_handle_at"};
  return names;
}

} // namespace pyvisor
