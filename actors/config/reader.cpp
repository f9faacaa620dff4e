// Typed reading of one TOML table (reader.hpp).
#include "config/reader.hpp"

#include <algorithm>
#include <filesystem>
#include <tuple>

namespace pyvisor::config_detail {

std::string_view type_name(const toml::node& n) {
  switch (n.type()) {
  case toml::node_type::string: return "string";
  case toml::node_type::integer: return "integer";
  case toml::node_type::floating_point: return "float";
  case toml::node_type::boolean: return "boolean";
  case toml::node_type::date: return "date";
  case toml::node_type::time: return "time";
  case toml::node_type::date_time: return "date-time";
  case toml::node_type::array: return "array";
  case toml::node_type::table: return "table";
  default: return "nothing";
  }
}

table_reader::table_reader(load_context& ctx, const toml::table& table, std::string path)
  : ctx_(ctx), table_(table), path_(std::move(path)) {}

const toml::node* table_reader::get(std::string_view key) {
  if (std::find(known_.begin(), known_.end(), key) == known_.end())
    known_.emplace_back(key);
  const toml::node* n = table_.get(key);
  if (n) {
    const auto& b = n->source().begin;
    ctx_.positions.record(path_of(key), static_cast<int>(b.line), static_cast<int>(b.column));
  }
  return n;
}

void table_reader::problem_at(const toml::node& node, const std::string& path,
                              std::string message) {
  const auto& b = node.source().begin;
  ctx_.problems.add(path, std::move(message), static_cast<int>(b.line),
                    static_cast<int>(b.column));
}

void table_reader::type_problem(const toml::node& node, const std::string& path,
                                std::string_view expected) {
  problem_at(node, path, "expected " + std::string{expected} + ", got " +
                           std::string{type_name(node)});
}

void table_reader::string(std::string_view key, std::string& out) {
  if (auto* n = get(key)) {
    if (auto* s = n->as_string())
      out = s->get();
    else
      type_problem(*n, path_of(key), "a string");
  }
}

void table_reader::boolean(std::string_view key, bool& out) {
  if (auto* n = get(key)) {
    if (auto* b = n->as_boolean())
      out = b->get();
    else
      type_problem(*n, path_of(key), "a boolean (true or false)");
  }
}

void table_reader::number(std::string_view key, double& out) {
  if (auto* n = get(key)) {
    if (auto* f = n->as_floating_point())
      out = f->get();
    else if (auto* i = n->as_integer())
      out = static_cast<double>(i->get());
    else
      type_problem(*n, path_of(key), "a number");
  }
}

std::optional<std::int64_t> table_reader::integer_value(std::string_view key, bool non_negative) {
  auto* n = get(key);
  if (!n)
    return std::nullopt;
  auto* i = n->as_integer();
  if (!i) {
    type_problem(*n, path_of(key), "an integer");
    return std::nullopt;
  }
  if (non_negative && i->get() < 0) {
    problem_at(*n, path_of(key), "must not be negative, got " + std::to_string(i->get()));
    return std::nullopt;
  }
  return i->get();
}

std::optional<std::size_t> table_reader::choice_value(std::string_view key,
                                                      const std::vector<std::string>& names) {
  auto* n = get(key);
  if (!n)
    return std::nullopt;
  auto* s = n->as_string();
  if (!s) {
    type_problem(*n, path_of(key), "a string");
    return std::nullopt;
  }
  auto i = choice_index(s->get(), names);
  if (!i)
    problem_at(*n, path_of(key), bad_choice(s->get(), names));
  return i;
}

void table_reader::duration(std::string_view key, std::optional<std::chrono::milliseconds>& out) {
  auto* n = get(key);
  if (!n)
    return;
  auto* s = n->as_string();
  if (!s) {
    type_problem(*n, path_of(key), "a duration string like \"5s\"");
    return;
  }
  auto d = parse_duration(s->get());
  if (d)
    out = *d;
  else
    problem_at(*n, path_of(key), d.error().message);
}

void table_reader::duration(std::string_view key, std::chrono::milliseconds& out) {
  std::optional<std::chrono::milliseconds> d;
  duration(key, d);
  if (d)
    out = *d;
}

void table_reader::size(std::string_view key, std::optional<std::uint64_t>& out, bool inherit) {
  auto* n = get(key);
  if (!n)
    return;
  if (auto* i = n->as_integer()) {
    if (i->get() < 0)
      problem_at(*n, path_of(key), "must not be negative, got " + std::to_string(i->get()));
    else
      out = static_cast<std::uint64_t>(i->get());
    return;
  }
  auto* s = n->as_string();
  if (!s) {
    type_problem(*n, path_of(key),
                 inherit ? "a size (an integer of bytes, a string like \"512MiB\", or "
                           "\"inherit\")"
                         : "a size (an integer of bytes or a string like \"512MiB\")");
    return;
  }
  if (inherit && s->get() == "inherit") {
    out.reset();
    return;
  }
  auto v = parse_size(s->get());
  if (v)
    out = *v;
  else
    problem_at(*n, path_of(key), v.error().message);
}

void table_reader::strings(std::string_view key, std::optional<std::vector<std::string>>& out) {
  auto* n = get(key);
  if (!n)
    return;
  auto* a = n->as_array();
  if (!a) {
    type_problem(*n, path_of(key), "an array of strings");
    return;
  }
  std::vector<std::string> v;
  const auto base = path_of(key);
  for (std::size_t i = 0; i < a->size(); ++i) {
    const auto& e = *a->get(i);
    const auto& b = e.source().begin;
    ctx_.positions.record(index(base, i), static_cast<int>(b.line), static_cast<int>(b.column));
    if (auto* s = e.as_string()) {
      v.push_back(s->get());
    } else {
      type_problem(e, index(base, i), "a string");
      v.emplace_back();  // keeps the indices of the elements after it (problem paths)
    }
  }
  out = std::move(v);
}

void table_reader::strings(std::string_view key, std::vector<std::string>& out) {
  std::optional<std::vector<std::string>> v;
  strings(key, v);
  if (v)
    out = std::move(*v);
}

void table_reader::path(std::string_view key, std::string& out) {
  std::string raw;
  string(key, raw);
  if (raw.empty())
    return;
  std::filesystem::path p{raw};
  if (p.is_relative())
    p = std::filesystem::path{ctx_.base_dir} / p;
  out = p.lexically_normal().string();
}

std::optional<table_reader> table_reader::table(std::string_view key) {
  auto* n = get(key);
  if (!n)
    return std::nullopt;
  if (auto* t = n->as_table())
    return table_reader{ctx_, *t, path_of(key)};
  type_problem(*n, path_of(key), "a table");
  return std::nullopt;
}

const toml::array* table_reader::array(std::string_view key) {
  auto* n = get(key);
  if (!n)
    return nullptr;
  if (auto* a = n->as_array())
    return a;
  type_problem(*n, path_of(key), "an array");
  return nullptr;
}

void table_reader::finish() {
  for (auto&& [k, v] : table_) {
    if (std::find(known_.begin(), known_.end(), k.str()) != known_.end())
      continue;
    const auto& b = k.source().begin;
    ctx_.problems.add(path_of(k.str()),
                      "unknown key '" + std::string{k.str()} + "'" + did_you_mean(k.str(), known_),
                      static_cast<int>(b.line), static_cast<int>(b.column));
  }
}

std::vector<named_table> named_tables(table_reader& parent, std::string_view key) {
  std::vector<named_table> out;
  auto* n = parent.get(key);
  if (!n)
    return out;
  auto* t = n->as_table();
  if (!t) {
    parent.problem_at(*n, parent.path_of(key),
                      "expected a table, got " + std::string{type_name(*n)});
    return out;
  }
  std::vector<std::tuple<int, int, named_table>> found;
  const auto base = parent.path_of(key);
  for (auto&& [k, v] : *t) {
    auto* sub = v.as_table();
    if (!sub) {
      parent.problem_at(v, join(base, k.str()),
                        "expected a table, got " + std::string{type_name(v)});
      continue;
    }
    const auto& b = sub->source().begin;
    parent.context().positions.record(join(base, k.str()), static_cast<int>(b.line),
                                      static_cast<int>(b.column));
    found.emplace_back(static_cast<int>(b.line), static_cast<int>(b.column),
                       named_table{std::string{k.str()}, sub});
  }
  // toml++ keeps keys sorted; declaration order is the order of the tables in the file.
  std::stable_sort(found.begin(), found.end(), [](const auto& a, const auto& b) {
    return std::tie(std::get<0>(a), std::get<1>(a)) < std::tie(std::get<0>(b), std::get<1>(b));
  });
  for (auto& f : found)
    out.push_back(std::move(std::get<2>(f)));
  return out;
}

} // namespace pyvisor::config_detail
