#include "process/identity.hpp"

#include <cerrno>
#include <cstring>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

namespace pyvisor::process {

namespace {

/// A non-negative decimal number that fits an id_t (the whole string), else -1.
long long parse_id(const std::string& s) {
  if (s.empty() || s.size() > 10)
    return -1;
  long long v = 0;
  for (char c : s) {
    if (c < '0' || c > '9')
      return -1;
    v = v * 10 + (c - '0');
  }
  return v < 0xFFFFFFFFLL ? v : -1;  // (id_t)-1 means "unchanged" to the set*id calls
}

/// getpwnam_r / getpwuid_r with a growing buffer. false: no such user; an error otherwise.
struct passwd_entry {
  bool found = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::string name;
};

expected<passwd_entry> lookup_user(const std::string& user) {
  long long num = parse_id(user);
  std::vector<char> buf(16384);
  for (;;) {
    passwd pw;
    passwd* res = nullptr;
    int rc = num >= 0 ? ::getpwuid_r(static_cast<uid_t>(num), &pw, buf.data(), buf.size(), &res)
                      : ::getpwnam_r(user.c_str(), &pw, buf.data(), buf.size(), &res);
    if (rc == ERANGE && buf.size() < (std::size_t{1} << 20)) {
      buf.resize(buf.size() * 4);
      continue;
    }
    if (rc != 0 && rc != ENOENT && rc != ESRCH)
      return make_error(errc::config_error,
                        "cannot look up user '" + user + "': " + std::strerror(rc));
    passwd_entry e;
    if (res != nullptr) {
      e.found = true;
      e.uid = res->pw_uid;
      e.gid = res->pw_gid;
      e.name = res->pw_name;
    } else if (num >= 0) {
      e.uid = static_cast<uid_t>(num);
    }
    return e;
  }
}

expected<gid_t> lookup_group(const std::string& group) {
  long long num = parse_id(group);
  if (num >= 0)
    return static_cast<gid_t>(num);
  std::vector<char> buf(16384);
  for (;;) {
    struct group gr;
    struct group* res = nullptr;
    int rc = ::getgrnam_r(group.c_str(), &gr, buf.data(), buf.size(), &res);
    if (rc == ERANGE && buf.size() < (std::size_t{1} << 20)) {
      buf.resize(buf.size() * 4);
      continue;
    }
    if (rc != 0 && rc != ENOENT && rc != ESRCH)
      return make_error(errc::config_error,
                        "cannot look up group '" + group + "': " + std::strerror(rc));
    if (res == nullptr)
      return make_error(errc::config_error, "identity: unknown group '" + group + "'");
    return res->gr_gid;
  }
}

} // namespace

expected<resolved_identity> resolve_identity(const identity& id) {
  resolved_identity r;
  if (id.empty())
    return r;
  r.describe = !id.user.empty() ? "user '" + id.user + "'" : "group '" + id.group + "'";
  if (!id.group.empty()) {
    auto g = lookup_group(id.group);
    if (!g)
      return std::move(g).error();
    r.set_group = true;
    r.gid = *g;
    r.groups = {*g};
  }
  if (id.user.empty())
    return r;
  auto pw = lookup_user(id.user);
  if (!pw)
    return std::move(pw).error();
  if (!pw->found && parse_id(id.user) < 0)
    return make_error(errc::config_error, "identity: unknown user '" + id.user + "'");
  r.set_user = true;
  r.uid = pw->uid;
  if (r.set_group)
    return r;
  if (!pw->found)
    return make_error(errc::config_error,
                      "identity: user " + id.user +
                        " has no passwd entry, so no primary group: set identity.group");
  // The initgroups(3) equivalent, computed here: the child may not allocate or read files.
  r.set_group = true;
  r.gid = pw->gid;
  int n = 32;
  for (;;) {
    r.groups.assign(static_cast<std::size_t>(n), 0);
    int got = n;
    if (::getgrouplist(pw->name.c_str(), pw->gid, r.groups.data(), &got) >= 0) {
      r.groups.resize(static_cast<std::size_t>(got));
      break;
    }
    if (got <= n || got > 65536)
      return make_error(errc::config_error,
                        "identity: cannot list the groups of user '" + id.user + "'");
    n = got;
  }
  return r;
}

} // namespace pyvisor::process
