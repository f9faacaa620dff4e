#include "gateway/session_table.hpp"

#include <random>

namespace pyvisor::gateway {

namespace {
constexpr std::size_t max_tombstones = 10000;
}

std::string new_session_id() {
  static thread_local std::random_device rd;  // the kernel's CSPRNG (getrandom) on Linux
  static constexpr char hex[] = "0123456789abcdef";
  std::string id = "s-";
  for (int i = 0; i < 4; ++i) {
    std::uint32_t v = rd();
    for (int k = 0; k < 8; ++k) {
      id += hex[v & 15];
      v >>= 4;
    }
  }
  return id;
}

session_clock::time_point session_table::expiry(session_clock::time_point created,
                                                session_clock::time_point last_used,
                                                std::chrono::milliseconds idle_ttl,
                                                std::chrono::milliseconds max_lifetime) {
  return std::min(last_used + idle_ttl, created + max_lifetime);
}

namespace {

session_clock::time_point expiry_of(const session& s) {
  return session_table::expiry(s.created, s.last_used, s.idle_ttl, s.max_lifetime);
}

/// Why `s` (expired at `now`) ended.
std::string expiry_reason(const session& s, session_clock::time_point now) {
  return now >= s.last_used + s.idle_ttl ? "expired: idle longer than its idle_ttl"
                                         : "expired: reached its max_lifetime";
}

} // namespace

std::shared_ptr<session> session_table::add(std::string pool, std::string tenant, bool durable,
                                            std::optional<pyvisor::env> e,
                                            std::chrono::milliseconds idle_ttl,
                                            std::chrono::milliseconds max_lifetime) {
  auto s = std::make_shared<session>(std::move(e));
  s->id = new_session_id();
  s->pool = std::move(pool);
  s->tenant = std::move(tenant);
  s->durable = durable;
  s->created_wall = std::chrono::system_clock::now();
  s->created = s->last_used = session_clock::now();
  s->idle_ttl = idle_ttl;
  s->max_lifetime = max_lifetime;
  std::lock_guard<std::mutex> g{mu_};
  if (open_.size() >= max_)
    return nullptr;
  open_.emplace(s->id, s);
  ++created_;
  return s;
}

session_table::lookup_result session_table::use(const std::string& id, bool touch) {
  std::shared_ptr<session> expired;
  lookup_result r;
  {
    std::lock_guard<std::mutex> g{mu_};
    auto i = open_.find(id);
    if (i == open_.end()) {
      auto t = tombstones_.find(id);
      if (t != tombstones_.end()) {
        r.gone = true;
        r.reason = t->second;
      }
      return r;
    }
    const auto now = session_clock::now();
    if (now >= expiry_of(*i->second)) {
      expired = i->second;
      r.gone = true;
      r.reason = expiry_reason(*i->second, now);
      open_.erase(i);
      ++expired_;
      bury(id, r.reason);
    } else {
      if (touch)
        i->second->last_used = now;
      r.found = i->second;
      r.last_used = i->second->last_used;
      r.idle_ttl = i->second->idle_ttl;
      r.max_lifetime = i->second->max_lifetime;
      return r;
    }
  }
  expired->destroy();
  return r;
}

bool session_table::extend(const std::string& id, std::chrono::milliseconds idle_ttl,
                           std::chrono::milliseconds max_lifetime) {
  std::lock_guard<std::mutex> g{mu_};
  auto i = open_.find(id);
  if (i == open_.end())
    return false;
  if (idle_ttl.count() > 0)
    i->second->idle_ttl = idle_ttl;
  if (max_lifetime.count() > 0)
    i->second->max_lifetime = max_lifetime;
  i->second->last_used = session_clock::now();
  return true;
}

bool session_table::end(const std::string& id, const std::string& reason) {
  std::shared_ptr<session> s;
  {
    std::lock_guard<std::mutex> g{mu_};
    auto i = open_.find(id);
    if (i == open_.end())
      return false;
    s = std::move(i->second);
    open_.erase(i);
    bury(id, reason);
  }
  s->destroy();
  return true;
}

std::size_t session_table::end_pool(const std::string& pool, const std::string& reason) {
  std::vector<std::shared_ptr<session>> ended;
  {
    std::lock_guard<std::mutex> g{mu_};
    for (auto i = open_.begin(); i != open_.end();) {
      if (i->second->pool == pool) {
        bury(i->first, reason);
        ended.push_back(std::move(i->second));
        i = open_.erase(i);
      } else {
        ++i;
      }
    }
  }
  for (auto& s : ended)
    s->destroy();
  return ended.size();
}

std::size_t session_table::sweep(session_clock::time_point now) {
  std::vector<std::shared_ptr<session>> ended;
  {
    std::lock_guard<std::mutex> g{mu_};
    for (auto i = open_.begin(); i != open_.end();) {
      if (now >= expiry_of(*i->second)) {
        bury(i->first, expiry_reason(*i->second, now));
        ended.push_back(std::move(i->second));
        i = open_.erase(i);
        ++expired_;
      } else {
        ++i;
      }
    }
  }
  for (auto& s : ended)
    s->destroy();
  return ended.size();
}

void session_table::clear(const std::string& reason) {
  std::vector<std::shared_ptr<session>> ended;
  {
    std::lock_guard<std::mutex> g{mu_};
    for (auto& [id, s] : open_) {
      bury(id, reason);
      ended.push_back(std::move(s));
    }
    open_.clear();
  }
  for (auto& s : ended)
    s->destroy();
}

void session_table::bury(const std::string& id, const std::string& reason) {
  if (tombstones_.emplace(id, reason).second)
    tombstone_order_.push_back(id);
  while (tombstone_order_.size() > max_tombstones) {
    tombstones_.erase(tombstone_order_.front());
    tombstone_order_.pop_front();
  }
}

std::size_t session_table::size() const {
  std::lock_guard<std::mutex> g{mu_};
  return open_.size();
}

std::map<std::string, std::size_t> session_table::per_pool() const {
  std::lock_guard<std::mutex> g{mu_};
  std::map<std::string, std::size_t> out;
  for (auto& [id, s] : open_)
    ++out[s->pool];
  return out;
}

std::uint64_t session_table::created_total() const {
  std::lock_guard<std::mutex> g{mu_};
  return created_;
}

std::uint64_t session_table::expired_total() const {
  std::lock_guard<std::mutex> g{mu_};
  return expired_;
}

} // namespace pyvisor::gateway
