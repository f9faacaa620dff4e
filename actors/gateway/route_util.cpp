#include "gateway/route_util.hpp"

#include "gateway/request_body.hpp"

namespace pyvisor::gateway {

bool json_content(const httplib::Request& req, httplib::Response& res) {
  if (!req.has_header("Content-Type"))
    return true;
  const std::string ct = req.get_header_value("Content-Type");
  const auto semi = ct.find(';');
  std::string base = ct.substr(0, semi);
  while (!base.empty() && base.back() == ' ')
    base.pop_back();
  for (auto& c : base)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  // curl -d sends application/x-www-form-urlencoded: the body is still read as JSON.
  if (base == "application/json" || base.empty() || base == "application/x-www-form-urlencoded" ||
      base == "text/plain")
    return true;
  send_error(res, 415, "unsupported_media_type",
             "send the body as application/json (got '" + ct + "')");
  return false;
}

std::optional<json> read_json_body(const httplib::Request& req, httplib::Response& res,
                                   bool empty_ok) {
  if (!json_content(req, res))
    return std::nullopt;
  auto doc = parse_body(req.body, empty_ok);
  if (!doc) {
    send_error(res, 400, "bad_request", doc.error().message);
    return std::nullopt;
  }
  return std::move(*doc);
}

} // namespace pyvisor::gateway
