#include "gateway/request_body.hpp"

#include <cmath>

#include "pyvisor/config.hpp"
#include "pyvisor/error.hpp"

namespace pyvisor::gateway {

namespace {

error bad(std::string message) {
  return make_error(errc::invalid_argument, std::move(message));
}

/// JSON -> the msgpack of one argument (the lossless rendering's tags decoded).
expected<arg> to_arg(const json& v, const std::string& where) {
  std::string bytes;
  try {
    bytes = document_to_msgpack(v);
  } catch (const std::exception& e) {
    return bad(where + ": " + e.what());
  }
  auto a = arg::from_msgpack(std::move(bytes));
  if (!a)
    return bad(where + ": " + a.error().message);
  return a;
}

expected<pyvisor::vars> to_vars(const json& doc, const char* field) {
  pyvisor::vars out;
  auto i = doc.find(field);
  if (i == doc.end() || i->is_null())
    return out;
  if (!i->is_object())
    return bad(std::string{"'"} + field + "' must be an object of name: value");
  for (auto& [name, v] : i->items()) {
    if (name.empty())
      return bad(std::string{"'"} + field + "' has an empty name");
    auto a = to_arg(v, std::string{field} + "." + name);
    if (!a)
      return std::move(a).error();
    out.push_back(var{name, std::move(*a)});
  }
  return out;
}

expected<std::string> string_field(const json& doc, const char* field, bool required) {
  auto i = doc.find(field);
  if (i == doc.end() || i->is_null()) {
    if (required)
      return bad(std::string{"'"} + field + "' is required");
    return std::string{};
  }
  if (!i->is_string())
    return bad(std::string{"'"} + field + "' must be a string");
  return i->get<std::string>();
}

expected<std::optional<std::chrono::milliseconds>> optional_duration(const json& doc,
                                                                     const char* field) {
  auto i = doc.find(field);
  if (i == doc.end() || i->is_null())
    return std::optional<std::chrono::milliseconds>{};
  auto d = parse_timeout(*i, field);
  if (!d)
    return std::move(d).error();
  return std::optional<std::chrono::milliseconds>{*d};
}

error unknown_field(const std::string& f, std::initializer_list<const char*> known) {
  std::string list;
  for (const char* k : known)
    list += (list.empty() ? "" : ", ") + std::string{k};
  return bad("unknown field '" + f + "' (known: " + list + ")");
}

} // namespace

expected<json> parse_body(std::string_view text, bool empty_ok) {
  std::size_t i = 0;
  while (i < text.size() && std::isspace(static_cast<unsigned char>(text[i])))
    ++i;
  if (i == text.size()) {
    if (empty_ok)
      return json::object();
    return bad("the body is empty: send a JSON object");
  }
  json doc;
  try {
    doc = parse_json(text);
  } catch (const json_error& e) {
    return bad(std::string{"malformed JSON: "} + e.what());
  }
  if (!doc.is_object())
    return bad("the body must be a JSON object");
  return doc;
}

expected<std::chrono::milliseconds> parse_timeout(const json& v, std::string_view field) {
  const std::string f{field};
  if (v.is_number()) {
    const double s = v.get<double>();
    if (!(s > 0) || !std::isfinite(s) || s > 1e9)
      return bad("'" + f + "' must be a positive number of seconds or a duration like \"5s\"");
    return std::chrono::milliseconds{std::max<long long>(1, std::llround(s * 1000))};
  }
  if (v.is_string()) {
    auto d = parse_duration(v.get<std::string>());
    if (!d)
      return bad("'" + f + "': " + d.error().message);
    if (d->count() <= 0)
      return bad("'" + f + "' must be positive");
    return *d;
  }
  return bad("'" + f + "' must be a number of seconds or a duration string like \"5s\"");
}

expected<call_body> parse_call_body(const json& doc, bool eval) {
  call_body b;
  for (auto& [k, v] : doc.items()) {
    (void)v;
    if (eval && k != "code" && k != "vars" && k != "key" && k != "timeout" && k != "file")
      return unknown_field(k, {"code", "vars", "key", "timeout", "file"});
    if (!eval && k != "name" && k != "args" && k != "kwargs" && k != "key" && k != "timeout")
      return unknown_field(k, {"name", "args", "kwargs", "key", "timeout"});
  }
  if (eval) {
    auto code = string_field(doc, "code", true);
    if (!code)
      return std::move(code).error();
    b.code = std::move(*code);
    auto vs = to_vars(doc, "vars");
    if (!vs)
      return std::move(vs).error();
    b.vars = std::move(*vs);
    auto file = string_field(doc, "file", false);
    if (!file)
      return std::move(file).error();
    b.file = file->empty() ? "<http>" : *file;
  } else {
    auto name = string_field(doc, "name", true);
    if (!name)
      return std::move(name).error();
    if (name->empty())
      return bad("'name' must not be empty");
    b.name = std::move(*name);
    if (auto i = doc.find("args"); i != doc.end() && !i->is_null()) {
      if (!i->is_array())
        return bad("'args' must be an array");
      std::size_t n = 0;
      for (auto& v : *i) {
        auto a = to_arg(v, "args[" + std::to_string(n++) + "]");
        if (!a)
          return std::move(a).error();
        b.args.push_back(std::move(*a));
      }
    }
    auto kw = to_vars(doc, "kwargs");
    if (!kw)
      return std::move(kw).error();
    b.vars = std::move(*kw);
  }
  auto key = string_field(doc, "key", false);
  if (!key)
    return std::move(key).error();
  b.key = std::move(*key);
  auto t = optional_duration(doc, "timeout");
  if (!t)
    return std::move(t).error();
  b.timeout = *t;
  return b;
}

expected<session_body> parse_session_body(const json& doc) {
  session_body b;
  for (auto& [k, v] : doc.items()) {
    (void)v;
    if (k != "durable" && k != "key" && k != "init" && k != "vars" && k != "idle_ttl" &&
        k != "max_lifetime" && k != "timeout")
      return unknown_field(k, {"durable", "key", "init", "vars", "idle_ttl", "max_lifetime",
                               "timeout"});
  }
  if (auto i = doc.find("durable"); i != doc.end() && !i->is_null()) {
    if (!i->is_boolean())
      return bad("'durable' must be true or false");
    b.durable = i->get<bool>();
  }
  auto key = string_field(doc, "key", false);
  if (!key)
    return std::move(key).error();
  b.key = std::move(*key);
  auto init = string_field(doc, "init", false);
  if (!init)
    return std::move(init).error();
  b.init = std::move(*init);
  auto vs = to_vars(doc, "vars");
  if (!vs)
    return std::move(vs).error();
  b.vars = std::move(*vs);
  for (auto [field, out] : {std::pair{"idle_ttl", &b.idle_ttl},
                            std::pair{"max_lifetime", &b.max_lifetime},
                            std::pair{"timeout", &b.timeout}}) {
    auto d = optional_duration(doc, field);
    if (!d)
      return std::move(d).error();
    *out = *d;
  }
  return b;
}

} // namespace pyvisor::gateway
