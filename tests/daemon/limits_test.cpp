// Limits against bad clients (docs/http.md, "Limits against bad clients"): a body above max_body
// is 413, a client that stops sending mid-request is cut off after read_timeout while others are
// served, and connections beyond max_connections are answered 503 and closed.
#include <atomic>
#include <thread>

#include "daemon_fixture.hpp"

namespace pyvisor::daemon_test {
namespace {

class Limits : public DaemonTest {
protected:
  bool start_limited() {
    return start(make_config(default_pool(1), "",
                             "max_body = \"2KiB\"\n"
                             "read_timeout = \"1s\"\n"
                             "idle_timeout = \"30s\"\n"
                             "max_connections = 4\n"));
  }

  /// A complete keep-alive request on a raw socket.
  static std::string healthz_request() { return "GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n"; }
};

/// An eval body of exactly `size` bytes.
std::string eval_body_of_size(std::size_t size) {
  std::string body = R"({"code": "return 1\n#)";
  const std::string end = R"("})";
  body += std::string(size - body.size() - end.size(), 'x');
  return body + end;
}

TEST_F(Limits, BodyAboveMaxBodyIs413AndTheDaemonKeepsServing) {
  ASSERT_TRUE(start_limited());
  auto c = client();
  auto small = c.post_raw("/v1/pools/default/eval", eval_body_of_size(1500));
  EXPECT_EQ(small.status, 200) << small.describe();
  auto big = c.post_raw("/v1/pools/default/eval", eval_body_of_size(4096));
  EXPECT_EQ(big.status, 413) << big.describe();
  EXPECT_EQ(big.code(), "payload_too_large") << big.body;
  auto after = c.eval("default", "return 'ok'");
  EXPECT_EQ(after.status, 200) << after.describe();
  EXPECT_EQ(metric_value(metrics(), R"(pyvisor_http_responses_total{status="413"})"), 1.0);
}

TEST_F(Limits, SlowClientIsCutOffAfterReadTimeoutWhileOthersAreServed) {
  ASSERT_TRUE(start_limited());
  std::atomic<bool> stop{false};
  std::atomic<int> ok{0}, failed{0};
  std::string first_failure;
  std::thread other([&] {
    gateway_client c(port_, {}, true);
    while (!stop.load()) {
      auto r = c.eval("default", "return 7");
      if (r.status == 200 && r.doc == json({{"value", 7}})) {
        ok.fetch_add(1);
      } else if (failed.fetch_add(1) == 0) {
        first_failure = r.describe();
      }
    }
  });
  raw_socket slow(port_);
  ASSERT_TRUE(slow.connected());
  ASSERT_TRUE(slow.send_all("POST /v1/pools/def"));  // a partial request line, then nothing
  const auto t0 = std::chrono::steady_clock::now();
  const bool closed = slow.wait_closed(scaled(10s));
  const auto took = ms_since(t0);
  const int ok_meanwhile = ok.load();
  stop = true;
  other.join();
  EXPECT_TRUE(closed) << "the server did not close the slow connection";
  EXPECT_LE(took, scaled(4s).count()) << "closed " << took << " ms after read_timeout 1s";
  EXPECT_EQ(failed.load(), 0) << first_failure;
  EXPECT_GT(ok_meanwhile, 0) << "no eval succeeded while the slow client was connected";
  // Whatever came back before the close is at most a 408.
  const std::string got = slow.read_until(0ms, [](const std::string&) { return true; });
  EXPECT_TRUE(got.empty() || got.rfind("HTTP/1.1 408", 0) == 0) << got;
  std::cout << "[ timing ] slow client closed " << took << " ms after its last byte; " << ok_meanwhile
            << " evals served meanwhile\n";
}

TEST_F(Limits, ConnectionsBeyondMaxConnectionsAre503AndClosed) {
  ASSERT_TRUE(start_limited());
  std::vector<std::unique_ptr<raw_socket>> idle;
  for (int i = 0; i < 4; ++i) {
    idle.push_back(std::make_unique<raw_socket>(port_));
    ASSERT_TRUE(idle.back()->connected());
    ASSERT_TRUE(idle.back()->send_all(healthz_request()));
    const std::string r = idle.back()->read_response(scaled(10s));
    ASSERT_EQ(r.rfind("HTTP/1.1 200", 0), 0u) << "connection " << i << ": " << r;
    ASSERT_FALSE(idle.back()->closed()) << "keep-alive connection " << i << " was closed";
  }

  // Three more clients, each sending a request and then keeping its connection open: each is
  // answered 503 at once, and the server closes the connection after the answer (a refused
  // client must not hold one of the few threads that answer refusals).
  std::vector<std::unique_ptr<raw_socket>> refused;
  for (int i = 0; i < 3; ++i) {
    refused.push_back(std::make_unique<raw_socket>(port_));
    ASSERT_TRUE(refused.back()->connected());
    ASSERT_TRUE(refused.back()->send_all(healthz_request()));
    const auto t0 = std::chrono::steady_clock::now();
    const std::string r = refused.back()->read_response(scaled(3s));
    EXPECT_EQ(r.rfind("HTTP/1.1 503", 0), 0u)
      << "refused connection " << i << " got after " << ms_since(t0) << " ms: '" << r << "'";
    EXPECT_NE(r.find("too_many_connections"), std::string::npos) << r;
    EXPECT_NE(r.find("Connection: close"), std::string::npos) << r;
  }
  for (std::size_t i = 0; i < refused.size(); ++i)
    EXPECT_TRUE(refused[i]->wait_closed(scaled(3s)))
      << "the server left refused connection " << i << " open after its 503";
  refused.clear();
  // The idle ones are still open and served.
  ASSERT_TRUE(idle[0]->send_all(healthz_request()));
  EXPECT_EQ(idle[0]->read_response(scaled(10s)).rfind("HTTP/1.1 200", 0), 0u);

  for (auto& s : idle)
    s->close();
  reply after;
  EXPECT_TRUE(eventually(
    [&] {
      after = client().eval("default", "return 'back'");
      return after.status == 200;
    },
    10s))
    << after.describe();
  EXPECT_EQ(after.doc, json({{"value", "back"}}));
  const std::string m = metrics();
  EXPECT_GE(metric_value(m, "pyvisor_http_connections_refused_total").value_or(0), 1.0) << m;
  EXPECT_GE(status()["gateway"]["connections_refused"].get<int>(), 1);
}

} // namespace
} // namespace pyvisor::daemon_test
