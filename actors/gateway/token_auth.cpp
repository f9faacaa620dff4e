#include "gateway/token_auth.hpp"

#include <algorithm>
#include <fstream>
#include <sstream>

#include "pyvisor/error.hpp"

namespace pyvisor::gateway {

namespace {

bool token_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '~' ||
         c == '+' || c == '/' || c == '=' || c == '-';
}

/// Compares in time that depends only on the lengths (no early exit on the first difference).
bool same_secret(std::string_view a, std::string_view b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  const std::size_t n = std::min(a.size(), b.size());
  for (std::size_t i = 0; i < n; ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

std::vector<std::string> words(std::string_view line) {
  std::vector<std::string> out;
  std::istringstream in{std::string{line}};
  std::string w;
  while (in >> w)
    out.push_back(w);
  return out;
}

} // namespace

expected<token_table> token_table::parse(std::string_view text, const std::string& name) {
  token_table t;
  t.enabled_ = true;
  std::vector<std::string> problems;
  std::size_t line_no = 0;
  std::istringstream lines{std::string{text}};
  std::string line;
  while (std::getline(lines, line)) {
    ++line_no;
    auto w = words(line);
    if (w.empty() || w[0][0] == '#')
      continue;
    const std::string where = name + ":" + std::to_string(line_no) + ": ";
    token_entry e;
    e.token = w[0];
    if (e.token.size() < 16 || !std::all_of(e.token.begin(), e.token.end(), token_char)) {
      problems.push_back(where + "a token has at least 16 characters from A-Z a-z 0-9 . _ ~ + / = -");
      continue;
    }
    if (w.size() < 2) {
      problems.push_back(where + "a token needs at least one scope (*, tenant:NAME or pool:NAME)");
      continue;
    }
    bool ok = true;
    for (std::size_t i = 1; i < w.size(); ++i) {
      const std::string& s = w[i];
      if (s == "*")
        e.admin = true;
      else if (s.rfind("tenant:", 0) == 0 && s.size() > 7)
        e.tenants.push_back(s.substr(7));
      else if (s.rfind("pool:", 0) == 0 && s.size() > 5)
        e.pools.push_back(s.substr(5));
      else {
        problems.push_back(where + "unknown scope '" + s + "' (use *, tenant:NAME or pool:NAME)");
        ok = false;
      }
    }
    for (const auto& other : t.entries_)
      if (other.token == e.token) {
        problems.push_back(where + "this token is listed twice");
        ok = false;
      }
    if (ok)
      t.entries_.push_back(std::move(e));
  }
  if (problems.empty() && t.entries_.empty())
    problems.push_back(name + ": no tokens (an empty tokens file would lock every client out)");
  if (!problems.empty()) {
    std::string msg;
    for (std::size_t i = 0; i < problems.size(); ++i)
      msg += (i ? "\n" : "") + problems[i];
    return make_error(errc::config_error, msg);
  }
  return t;
}

expected<token_table> token_table::load(const std::string& path) {
  std::ifstream in{path, std::ios::binary};
  if (!in)
    return make_error(errc::config_error, path + ": cannot read the tokens file");
  std::ostringstream s;
  s << in.rdbuf();
  return parse(s.str(), path);
}

const token_entry* token_table::authenticate(std::string_view authorization) const {
  constexpr std::string_view prefix = "Bearer ";
  if (authorization.size() <= prefix.size() || authorization.substr(0, prefix.size()) != prefix)
    return nullptr;
  auto token = authorization.substr(prefix.size());
  const token_entry* found = nullptr;
  for (const auto& e : entries_)  // every entry compared: no timing hint of which matched
    if (same_secret(e.token, token))
      found = &e;
  return found;
}

token_table::verdict token_table::check_pool(std::string_view authorization, std::string_view pool,
                                             std::string_view tenant) const {
  if (!enabled_)
    return verdict::allowed;
  const token_entry* e = authenticate(authorization);
  if (e == nullptr)
    return verdict::unauthenticated;
  if (e->admin)
    return verdict::allowed;
  if (std::find(e->pools.begin(), e->pools.end(), pool) != e->pools.end())
    return verdict::allowed;
  if (!tenant.empty() && std::find(e->tenants.begin(), e->tenants.end(), tenant) != e->tenants.end())
    return verdict::allowed;
  return verdict::forbidden;
}

token_table::verdict token_table::check_admin(std::string_view authorization) const {
  if (!enabled_)
    return verdict::allowed;
  const token_entry* e = authenticate(authorization);
  if (e == nullptr)
    return verdict::unauthenticated;
  return e->admin ? verdict::allowed : verdict::forbidden;
}

} // namespace pyvisor::gateway
