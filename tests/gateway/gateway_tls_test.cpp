// The gateway with TLS, in process, over a real pool of Python workers: a certificate made with
// the openssl program, an HTTPS client that verifies it, a plain-HTTP client refused without
// harm, unusable TLS files refused at start.
#include <gtest/gtest.h>

#include <httplib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>

#include "gateway/http_gateway.hpp"
#include "pyvisor/runtime.hpp"

namespace pyvisor::gateway {
namespace {

namespace fs = std::filesystem;

struct temp_dir {
  fs::path path;
  temp_dir() {
    std::random_device rd;
    path = fs::temp_directory_path() / ("pyvisor-tls-" + std::to_string(rd()));
    fs::create_directories(path);
  }
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

class GatewayTls : public ::testing::Test {
protected:
  void SetUp() override {
    cert_ = (dir_.path / "cert.pem").string();
    key_ = (dir_.path / "key.pem").string();
    const std::string cmd =
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 "
      "-subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 -keyout '" + key_ + "' -out '" +
      cert_ + "' >/dev/null 2>&1";
    if (std::system(cmd.c_str()) != 0)
      GTEST_SKIP() << "the openssl program could not make a certificate";
    pool_options po;
    po.name = "p";
    po.workers = 1;
    po.worker.python = "/usr/bin/python3";
    auto p = rt_.spawn_pool(po);
    ASSERT_TRUE(p) << p.error().to_string();
    pool_ = *p;
    ASSERT_TRUE(pool_->wait_ready(1, std::chrono::seconds{60}));
    auto routes = std::make_shared<pool_routes>();
    routes->emplace("p", pool_route{"p", "", "p", *pool_, 1});
    hooks_.routes = [routes] { return std::shared_ptr<const pool_routes>(routes); };
  }

  expected<std::unique_ptr<http_gateway>> start(const gateway_settings& s) {
    auto gw = http_gateway::start(listen_address{"127.0.0.1", 0}, s, hooks_);
    if (gw)
      (*gw)->serve();
    return gw;
  }

  temp_dir dir_;
  std::string cert_, key_;
  runtime rt_{runtime_options{.log = {}}};
  std::optional<pyvisor::pool> pool_;
  gateway_hooks hooks_;
};

TEST_F(GatewayTls, ServesHttpsWithAVerifiedCertificate) {
  gateway_settings s;
  s.tls_cert = cert_;
  s.tls_key = key_;
  auto gw = start(s);
  ASSERT_TRUE(gw) << gw.error().to_string();
  EXPECT_EQ((*gw)->url().rfind("https://127.0.0.1:", 0), 0u) << (*gw)->url();

  httplib::SSLClient tls{"127.0.0.1", (*gw)->port()};
  tls.set_ca_cert_path(cert_.c_str());
  tls.enable_server_certificate_verification(true);
  auto r = tls.Post("/v1/pools/p/eval", R"({"code": "return 1 + 1"})", "application/json");
  ASSERT_TRUE(r) << httplib::to_string(r.error());
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, "{\"value\":2}\n");

  // Plain HTTP to the TLS port gets no answer, and the gateway keeps serving.
  httplib::Client plain{"127.0.0.1", (*gw)->port()};
  plain.set_read_timeout(5, 0);
  auto refused = plain.Get("/healthz");
  EXPECT_TRUE(!refused || refused->status != 200);
  auto again = tls.Get("/healthz");
  ASSERT_TRUE(again) << httplib::to_string(again.error());
  EXPECT_EQ(again->status, 200);
  (*gw)->stop();
}

TEST_F(GatewayTls, UnusableTlsFilesAreRefusedAtStart) {
  gateway_settings missing;
  missing.tls_cert = (dir_.path / "none.pem").string();
  missing.tls_key = key_;
  auto a = start(missing);
  ASSERT_FALSE(a);
  EXPECT_EQ(a.error().code, errc::config_error);
  EXPECT_NE(a.error().message.find("none.pem: cannot read the TLS file"), std::string::npos);

  const auto junk = (dir_.path / "junk.pem").string();
  std::ofstream{junk} << "not a certificate\n";
  gateway_settings bad;
  bad.tls_cert = junk;
  bad.tls_key = key_;
  auto b = start(bad);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("not a usable PEM"), std::string::npos) << b.error().message;

  gateway_settings swapped;  // a key where the certificate goes
  swapped.tls_cert = key_;
  swapped.tls_key = cert_;
  EXPECT_FALSE(start(swapped));
}

TEST_F(GatewayTls, PlainGatewayAnswersTheSmallCases) {
  auto gw = start(gateway_settings{});
  ASSERT_TRUE(gw) << gw.error().to_string();
  httplib::Client c{"127.0.0.1", (*gw)->port()};
  auto icon = c.Get("/favicon.ico");
  ASSERT_TRUE(icon);
  EXPECT_EQ(icon->status, 204);
  auto xml = c.Post("/v1/pools/p/eval", "<code/>", "application/xml");
  ASSERT_TRUE(xml);
  EXPECT_EQ(xml->status, 415);
  auto form = c.Post("/v1/pools/p/eval", R"({"code": "return 3"})",
                     "application/x-www-form-urlencoded");  // what curl -d sends
  ASSERT_TRUE(form);
  EXPECT_EQ(form->body, "{\"value\":3}\n");
  auto tuple = c.Post("/v1/pools/p/eval", R"j({"code": "return (1, b'\\x00')"})j",
                      "application/json");
  ASSERT_TRUE(tuple);
  EXPECT_EQ(tuple->body, "{\"value\":{\"$tuple\":[1,{\"$bytes\":\"AA==\"}]}}\n");
  (*gw)->stop();
}

} // namespace
} // namespace pyvisor::gateway
