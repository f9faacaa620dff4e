#pragma once

// Bearer tokens of the HTTP gateway (`[gateway] tokens_file`, docs/http.md). One token per line:
//
//   TOKEN SCOPE [SCOPE ...]      SCOPE = *  |  tenant:NAME  |  pool:NAME
//
// '#' starts a comment line; blank lines are skipped. A token of 16 or more characters from
// [A-Za-z0-9._~+/=-]. `*` grants every pool and the admin endpoints (/v1/status, /metrics, the
// status page); tenant:NAME every pool of that tenant; pool:NAME one pool.

#include <string>
#include <string_view>
#include <vector>

#include "pyvisor/expected.hpp"

namespace pyvisor::gateway {

struct token_entry {
  std::string token;
  bool admin = false;
  std::vector<std::string> tenants;
  std::vector<std::string> pools;
};

class token_table {
public:
  enum class verdict { allowed, unauthenticated, forbidden };

  /// No tokens: every request is allowed (loopback only; config validation enforces it).
  token_table() = default;
  /// Reads the file; a config_error naming "file:line" for each malformed line.
  static expected<token_table> load(const std::string& path);
  /// Parses the text of a tokens file (`name` in messages).
  static expected<token_table> parse(std::string_view text, const std::string& name);

  bool enabled() const noexcept { return enabled_; }

  /// The token of an "Authorization: Bearer TOKEN" header value; nullptr when none matches.
  const token_entry* authenticate(std::string_view authorization) const;
  /// Whether the request may use pool `pool` of tenant `tenant` ("" when it has none).
  verdict check_pool(std::string_view authorization, std::string_view pool,
                     std::string_view tenant) const;
  /// Whether the request may use the admin endpoints.
  verdict check_admin(std::string_view authorization) const;

private:
  bool enabled_ = false;
  std::vector<token_entry> entries_;
};

} // namespace pyvisor::gateway
