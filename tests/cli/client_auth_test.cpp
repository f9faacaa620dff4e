// The client commands' connection: an unreachable daemon, a token-protected one (--token-file,
// PYVISOR_TOKEN, a refused token, a token without the admin scope) and https (--cacert).

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "cli_daemon.hpp"

namespace {

using pyvisor::cli_test::DaemonCliTest;
using pyvisor::cli_test::contains;
using pyvisor::cli_test::daemon_config;
using pyvisor::cli_test::default_pools;
using pyvisor::cli_test::describe;
using pyvisor::cli_test::program;
using pyvisor::cli_test::pyvisor;
using pyvisor::cli_test::run_process;
using pyvisor::cli_test::run_result;
using pyvisor::cli_test::write_file;

/// A loopback port nothing listens on (bound, then released).
int free_port() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t n = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &n);
  ::close(fd);
  return ntohs(a.sin_port);
}

/// The program with `env` (NAME=VALUE, or -u NAME) in its environment.
run_result pyvisor_env(const std::vector<std::string>& env, const std::vector<std::string>& args) {
  std::vector<std::string> all = env;
  all.push_back(program);
  all.insert(all.end(), args.begin(), args.end());
  return run_process("/usr/bin/env", all);
}

TEST(ClientConnect, UnreachableDaemonIsAClearError) {
  const std::string url = "http://127.0.0.1:" + std::to_string(free_port());
  const std::string message = "error: connection_failed: cannot connect to " + url +
                              ": connection refused or host unreachable (is `pyvisor serve` running?)\n";
  auto r = pyvisor({"status", "--connect", url});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_EQ(r.err, message);
  r = pyvisor({"eval", "--connect", url, "--pool", "default", "return 1"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_EQ(r.err, message);
  // PYVISOR_URL is the default of --connect.
  r = pyvisor_env({"PYVISOR_URL=" + url}, {"session", "show", "s-1"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_EQ(r.err, message);
  // --json: the error object on stdout.
  r = pyvisor({"status", "--json", "--connect", url});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.out, "{\"error\":{\"code\":\"connection_failed\",")) << r.out;
}

using ClientAuth = DaemonCliTest;

TEST_F(ClientAuth, TokenFromFileOrEnvironment) {
  write_file(dir() / "tokens", "# token   scopes\n"
                               "0123456789abcdef0123   *\n"
                               "fedcba9876543210fedc   pool:default\n");
  write_file(dir() / "admin.token", "0123456789abcdef0123\n");
  write_file(dir() / "user.token", "# for pool default\nfedcba9876543210fedc\n");
  write_file(dir() / "wrong.token", "wrongwrongwrongwrong\n");
  ASSERT_TRUE(start(daemon_config(default_pools(1), "tokens_file = \"" + (dir() / "tokens") + "\"\n")));
  const std::vector<std::string> no_token{"-u", "PYVISOR_TOKEN"};
  // No token: 401, and the message says how to give one.
  auto r = pyvisor_env(no_token, {"status", "--connect", url()});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "error: unauthorized: ") &&
              contains(r.err, "(give one with --token-file FILE or PYVISOR_TOKEN)"))
      << r.err;
  r = pyvisor_env(no_token, {"eval", "--connect", url(), "--pool", "default", "return 1"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "error: unauthorized: ")) << r.err;
  // --token-file.
  r = pyvisor_env(no_token, {"status", "--connect", url(), "--token-file", dir() / "admin.token"});
  EXPECT_EQ(r.status, 0) << describe(r);
  r = pyvisor_env(no_token, {"eval", "--connect", url(), "--token-file", dir() / "user.token",
                             "--pool", "default", "return 2"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "2\n");
  // PYVISOR_TOKEN.
  r = pyvisor_env({"PYVISOR_TOKEN=fedcba9876543210fedc"},
                  {"eval", "--connect", url(), "--pool", "default", "return 3"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "3\n");
  r = pyvisor_env({"PYVISOR_TOKEN=fedcba9876543210fedc"},
                  {"session", "new", "--connect", url(), "--pool", "default"});
  EXPECT_EQ(r.status, 0) << describe(r);
  // A token the daemon does not know.
  r = pyvisor_env(no_token, {"status", "--connect", url(), "--token-file", dir() / "wrong.token"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "(the daemon refused the token given)")) << r.err;
  // A pool token on the admin endpoint: 403.
  r = pyvisor_env(no_token, {"status", "--connect", url(), "--token-file", dir() / "user.token"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "error: forbidden: ")) << r.err;
  // A token file that cannot be read: usage error.
  r = pyvisor({"status", "--connect", url(), "--token-file", dir() / "missing.token"});
  EXPECT_EQ(r.status, 2) << describe(r);
  EXPECT_TRUE(contains(r.err, "--token-file: cannot read")) << r.err;
}

TEST_F(ClientAuth, HttpsWithTheDaemonsCertificate) {
  if (!std::filesystem::exists("/usr/bin/openssl")) GTEST_SKIP() << "no /usr/bin/openssl";
  const auto made = run_process(
      "/usr/bin/openssl",
      {"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
       "-keyout", dir() / "key.pem", "-out", dir() / "cert.pem", "-days", "2", "-subj",
       "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"});
  ASSERT_EQ(made.status, 0) << describe(made);
  ASSERT_TRUE(start(daemon_config(default_pools(1), "tls_cert = \"" + (dir() / "cert.pem") +
                                                        "\"\ntls_key = \"" + (dir() / "key.pem") +
                                                        "\"\n")));
  ASSERT_TRUE(url().starts_with("https://")) << url();
  auto r = pyvisor({"eval", "--connect", url(), "--cacert", dir() / "cert.pem", "--pool",
                    "default", "return 'tls'"});
  EXPECT_EQ(r.status, 0) << describe(r);
  EXPECT_EQ(r.out, "\"tls\"\n");
  r = pyvisor_env({"PYVISOR_CACERT=" + (dir() / "cert.pem")}, {"status", "--connect", url()});
  EXPECT_EQ(r.status, 0) << describe(r);
  // Without the CA: the certificate is not trusted.
  r = pyvisor_env({"-u", "PYVISOR_CACERT"},
                  {"eval", "--connect", url(), "--pool", "default", "return 1"});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "its certificate could not be verified")) << r.err;
  // Plain http to an https daemon.
  std::string http = url();
  http.replace(0, 5, "http");
  r = pyvisor({"status", "--connect", http});
  EXPECT_EQ(r.status, 1) << describe(r);
  EXPECT_TRUE(contains(r.err, "error: connection_failed: ")) << r.err;
}

} // namespace
