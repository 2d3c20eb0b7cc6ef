// The HTTP load generator (`narae bench switch --http`, tools/cmd_bench_http.cpp):
// its answer parser refuses what it must, every request it sends is signed
// (a verifier with the merchant's secret accepts each one, each nonce and
// Idempotency-Key fresh), malformed answers from a server count as errors,
// and against the real narae-switch every request is a durable authorization.
#include <gtest/gtest.h>

#include "tools/cmd_bench_http.cpp"  // NOLINT: the unit under test
// (after it: the harness's headers pull in Asio, which wants <utility> first)
#include <set>

#include "tests/switch_harness.hpp"
#include "tests/test_util.hpp"

namespace narae::tools {
namespace {

namespace harness = narae::switching::harness;
using harness::Slurp;
using narae::testing::TempDir;
using State = HttpAnswer::State;

std::string Answer(std::string_view status_line, std::string_view body,
                   std::string_view extra_headers = "") {
  std::string a(status_line);
  a += "\r\nContent-Type: application/json\r\n";
  a += extra_headers;
  a += "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n";
  a += body;
  return a;
}

constexpr std::string_view kPayment =
    R"({"id":"pay_1","object":"payment","status":"authorized","amount":5,)"
    R"("order_ref":"bench-1-0-7","capture":"manual"})";

TEST(BenchHttpParse, CompleteAnswersAndTheirStatus) {
  const std::string a = Answer("HTTP/1.1 201 Created", kPayment);
  HttpAnswer r = ParseHttpAnswer(a, "bench-1-0-7");
  EXPECT_EQ(r.state, State::kComplete);
  EXPECT_EQ(r.status, 201);
  EXPECT_EQ(r.size, a.size());
  // Header names in any case, spaces around the value.
  const std::string b = "HTTP/1.1 402 Payment Required\r\ncontent-LENGTH:  2 \r\n\r\n{}";
  r = ParseHttpAnswer(b, "bench-1-0-7");
  EXPECT_EQ(r.state, State::kComplete);
  EXPECT_EQ(r.status, 402);
  r = ParseHttpAnswer(Answer("HTTP/1.1 429 Too Many Requests", R"({"error":"rate"})"), "x");
  EXPECT_EQ(r.state, State::kComplete);
  EXPECT_EQ(r.status, 429);
}

TEST(BenchHttpParse, IncompleteUntilTheWholeBodyIsIn) {
  const std::string a = Answer("HTTP/1.1 201 Created", kPayment);
  for (size_t n : {size_t{0}, size_t{5}, a.find("\r\n\r\n"), a.size() - 1}) {
    EXPECT_EQ(ParseHttpAnswer(std::string_view(a).substr(0, n), "bench-1-0-7").state,
              State::kIncomplete)
        << n;
  }
}

TEST(BenchHttpParse, MalformedAnswersAreRefused) {
  const std::string_view ref = "bench-1-0-7";
  const std::vector<std::string> bad = {
      "HTTP/1.1 2x1 Created\r\nContent-Length: 2\r\n\r\n{}",                 // status not digits
      "HTTX/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",                 // not HTTP
      "HTTP/1.1 2010 Created\r\nContent-Length: 2\r\n\r\n{}",                // four digits
      "HTTP/1.1 201 Created\r\nContent-Type: x\r\n\r\n{}",                   // no Content-Length
      "HTTP/1.1 201 Created\r\nContent-Length: 2x\r\n\r\n{}",                // not a number
      "HTTP/1.1 201 Created\r\nContent-Length: \r\n\r\n{}",                  // empty
      "HTTP/1.1 201 Created\r\nContent-Length: 99999999\r\n\r\n",            // above 1 MiB
      "HTTP/1.1 402 x\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\n{}",  // twice
      "HTTP/1.1 402 x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n",
      "HTTP/1.1 402 x\r\nno colon here\r\nContent-Length: 2\r\n\r\n{}",
      "HTTP/1.1 402 x\nContent-Length: 2\r\n\r\n{}",                // bare LF
      "HTTP/1.1 402 x\r\nContent-Length: 2\r\n\r\n{}HTTP/1.1 201",  // bytes not asked for
      Answer("HTTP/1.1 402 x", "not json"),
      Answer("HTTP/1.1 201 Created", R"({"status":"declined","order_ref":"bench-1-0-7"})"),
      Answer("HTTP/1.1 201 Created", R"({"status":"authorized","order_ref":"bench-1-0-8"})"),
      Answer("HTTP/1.1 201 Created", R"({"status":"authorized","order_ref":"bench-1-0-77"})"),
      Answer("HTTP/1.1 201 Created", R"({"status":"authorized"})"),
  };
  for (const std::string& b : bad) {
    EXPECT_EQ(ParseHttpAnswer(b, ref).state, State::kMalformed) << b;
  }
  // A head that never ends, past the bound.
  EXPECT_EQ(ParseHttpAnswer(std::string(kResponseBytesMax + 1, 'a'), ref).state, State::kMalformed);
}

// A loopback server taking the generator's connections one at a time: it
// reads each request whole and answers it with `answer(request)`; "" closes
// the connection.
class FakeServer {
 public:
  explicit FakeServer(std::function<std::string(const std::string&)> answer)
      : answer_(std::move(answer)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    NARAE_CHECK(fd_ >= 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    NARAE_CHECK(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    NARAE_CHECK(::listen(fd_, 16) == 0);
    socklen_t len = sizeof a;
    NARAE_CHECK(::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) == 0);
    port_ = ntohs(a.sin_port);
    thread_ = std::thread([this] { Serve(); });
  }
  ~FakeServer() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    for (std::thread& t : conns_) t.join();
    ::close(fd_);
  }
  std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

 private:
  void Serve() {
    for (int conns = 0; conns < 64; ++conns) {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      conns_.emplace_back([this, c] { Connection(c); });
    }
  }

  void Connection(int c) {
    {
      std::string in;
      char buf[4096];
      for (int requests = 0; requests < 1'000'000;) {
        const size_t head = in.find("\r\n\r\n");
        if (head != std::string::npos) {
          const size_t at = in.find("Content-Length: ");
          const size_t length = at < head ? std::stoul(in.substr(at + 16)) : 0;
          if (in.size() >= head + 4 + length) {
            const std::string answer = answer_(in.substr(0, head + 4 + length));
            in.erase(0, head + 4 + length);
            ++requests;
            if (answer.empty() || ::send(c, answer.data(), answer.size(), MSG_NOSIGNAL) < 0) break;
            continue;
          }
        }
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        in.append(buf, static_cast<size_t>(n));
      }
    }
    ::close(c);
  }

  std::function<std::string(const std::string&)> answer_;
  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::vector<std::thread> conns_;  // touched by thread_ only until it is joined
};

std::string Header(const std::string& request, const std::string& name) {
  const size_t at = request.find("\r\n" + name + ": ");
  if (at == std::string::npos) return "";
  const size_t begin = at + name.size() + 4;
  return request.substr(begin, request.find("\r\n", begin) - begin);
}

struct BenchRun {
  int code = -1;
  nlohmann::json figures;
};

BenchRun RunBench(const std::string& address, const std::string& demo, uint32_t connections,
                  uint32_t threads) {
  BenchHttpArgs args;
  args.http = address;
  args.credentials = demo;
  args.connections = connections;
  args.threads = threads;
  args.duration_s = 1;
  args.json = true;
  ::testing::internal::CaptureStdout();
  BenchRun r;
  r.code = RunBenchHttp(args);
  std::fflush(stdout);
  r.figures = nlohmann::json::parse(::testing::internal::GetCapturedStdout(), nullptr, false);
  return r;
}

class BenchHttpServe : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!harness::HaveBinaries()) GTEST_SKIP() << "narae not built";
    ASSERT_TRUE(harness::SeedDemo(dir_.Sub("data"), demo_, 2));
    creds_ = nlohmann::json::parse(Slurp(demo_));
  }
  TempDir dir_;
  const std::string demo_ = dir_.Sub("demo.json");
  nlohmann::json creds_;
};

// Every request the generator sends passes the switch's own verifier with
// the merchant's secret (a fresh nonce each time, or the verifier refuses a
// replay), carries a fresh Idempotency-Key and the body it signed.
TEST_F(BenchHttpServe, EveryRequestIsFreshlySigned) {
  std::map<std::string, crypto::SecretBytes> secrets;
  for (const nlohmann::json& m : creds_["merchants"]) {
    secrets.emplace(m["id"].get<std::string>(),
                    *crypto::SecretFromHex(m["api_secret_hex"].get<std::string>()));
  }
  crypto::MerchantRequestVerifier verifier({});
  std::set<std::string> keys;
  std::mutex mu;
  size_t refused = 0, requests = 0;
  FakeServer server([&](const std::string& req) {
    std::lock_guard<std::mutex> lock(mu);
    ++requests;
    const std::string body = req.substr(req.find("\r\n\r\n") + 4);
    const auto secret = secrets.find(Header(req, "X-Narae-Key-Id"));
    const bool fresh_key = keys.insert(Header(req, "Idempotency-Key")).second;
    const Status s =
        secret == secrets.end()
            ? Status::NotFound("merchant")
            : verifier.Verify(secret->second.view(), "POST", "/v1/payments",
                              std::stoll(Header(req, "X-Narae-Timestamp")),
                              Header(req, "X-Narae-Nonce"), body, Header(req, "X-Narae-Signature"),
                              static_cast<int64_t>(std::time(nullptr)));
    if (!s.ok() || !fresh_key || !req.starts_with("POST /v1/payments HTTP/1.1\r\n")) {
      ++refused;
      return Answer("HTTP/1.1 401 Unauthorized", R"({"error":"unauthorized"})");
    }
    const size_t ref = body.find("\"order_ref\":\"");
    const std::string order_ref = body.substr(ref + 13, body.find('"', ref + 13) - ref - 13);
    return Answer("HTTP/1.1 201 Created",
                  R"({"status":"authorized","order_ref":")" + order_ref + "\"}");
  });
  const BenchRun r = RunBench(server.address(), demo_, 4, 2);
  ASSERT_FALSE(r.figures.is_discarded());
  EXPECT_EQ(r.code, 0) << r.figures.dump();
  EXPECT_EQ(r.figures["errors"], 0u) << r.figures.dump();
  EXPECT_GT(r.figures["approved"].get<uint64_t>(), 50u);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(refused, 0u);
  EXPECT_EQ(r.figures["approved"].get<uint64_t>(), requests);
}

// Answers that are not what was asked for are errors, never authorizations.
TEST_F(BenchHttpServe, MalformedAnswersCountAsErrors) {
  const std::vector<std::string> answers = {
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",  // no authorization in it
      Answer("HTTP/1.1 201 Created", R"({"status":"authorized","order_ref":"bench-other"})"),
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}{}",  // bytes not asked for
      "garbage\r\n\r\n",
      "",  // the server closes the connection
  };
  for (const std::string& answer : answers) {
    FakeServer server([&](const std::string&) { return answer; });
    const BenchRun r = RunBench(server.address(), demo_, 2, 1);
    ASSERT_FALSE(r.figures.is_discarded()) << answer;
    EXPECT_EQ(r.code, 1) << answer;
    EXPECT_EQ(r.figures["approved"], 0u) << answer;
    EXPECT_EQ(r.figures["errors"], 2u) << answer << r.figures.dump();  // each connection's
  }
}

// The real switch: every request of a second's load is a durable
// authorization (none refused for its signature, nonce or key).
TEST(BenchHttpLive, EveryRequestAuthorizedByTheSwitch) {
  if (!harness::HaveBinaries()) GTEST_SKIP() << "narae-switch or narae not built";
  TempDir dir;
  const std::string data = dir.Sub("data"), demo = dir.Sub("demo.json");
  ASSERT_EQ(harness::RunCommand(harness::NaraeBin() + " demo seed --bench --data " + data +
                                " --out " + demo + " --customers 4 >/dev/null"),
            0);
  harness::SwitchProcess sw;
  ASSERT_TRUE(sw.Start(data, {"--http-listen", "127.0.0.1:0"}));
  const BenchRun r = RunBench("127.0.0.1:" + std::to_string(sw.http_port()), demo, 8, 2);
  ASSERT_FALSE(r.figures.is_discarded());
  EXPECT_EQ(r.code, 0) << r.figures.dump();
  EXPECT_EQ(r.figures["errors"], 0u) << r.figures.dump();
  EXPECT_EQ(r.figures["declined"], 0u) << r.figures.dump();
  EXPECT_GT(r.figures["approved"].get<uint64_t>(), 20u) << r.figures.dump();
  EXPECT_EQ(sw.Stop(), 0);
}

}  // namespace
}  // namespace narae::tools
