// The HTTP load generator (`narae bench switch --http`, tools/cmd_bench_http.cpp):
// its answer parser refuses what it must, its signature is crypto's, its
// request bytes are those of the format, every request it sends is signed
// (a verifier with the merchant's secret accepts each one, each nonce and
// Idempotency-Key fresh), malformed answers from a server count as errors,
// and against the real narae-switch every request is a durable authorization;
// the I/O loops on io_uring and on epoll alike.
#include <gtest/gtest.h>

#include "tools/cmd_bench_http.cpp"  // NOLINT: the unit under test
// (after it: the harness's headers pull in Asio, which wants <utility> first)
#include <random>
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

// The answer's needles are found from the end: the same position as
// string_view::rfind for any text, needle-like runs included.
TEST(BenchHttpParse, NeedleFindsTheLastOccurrence) {
  std::mt19937 rng(7);
  const std::string_view alphabet = R"("order_ref:sttuzd)";
  for (const Needle* needle : {&kAuthorized, &kOrderRef}) {
    const std::string_view s =
        needle == &kAuthorized ? R"("status":"authorized")"sv : R"("order_ref":")"sv;
    for (int round = 0; round < 20'000; ++round) {
      std::string hay(rng() % 64, 'x');
      for (char& ch : hay) ch = alphabet[rng() % alphabet.size()];
      // The needle (or most of it) at a few places.
      for (size_t k = rng() % 3; k > 0; --k) {
        const size_t cut = rng() % 2 ? s.size() : rng() % s.size();
        hay.insert(rng() % (hay.size() + 1), s.substr(0, cut));
      }
      ASSERT_EQ(needle->LastIn(hay), std::string_view(hay).rfind(s)) << hay;
    }
    EXPECT_EQ(needle->LastIn(""), std::string_view::npos);
    EXPECT_EQ(needle->LastIn(s), 0u);
    EXPECT_EQ(needle->LastIn(std::string(s) + "x" + std::string(s)), s.size() + 1);
  }
}

// The generator's own HMAC (keyed states with the canonical string's head)
// signs as crypto::SignMerchantRequest does, for secrets shorter and longer
// than the hash's block.
TEST(BenchHttpSign, SameSignatureAsCrypto) {
  std::mt19937 rng(11);
  for (size_t secret_size : {16, 32, 63, 64, 65, 100}) {
    crypto::Bytes secret(secret_size);
    for (uint8_t& b : secret) b = static_cast<uint8_t>(rng());
    RequestMac mac;
    mac.Key(secret);
    for (int round = 0; round < 50; ++round) {
      const std::string timestamp = std::to_string(1'700'000'000 + rng() % 100'000'000);
      const std::string nonce = "nonce-" + std::to_string(rng()) + std::string(rng() % 100, 'n');
      std::string body(rng() % 400, ' ');
      for (char& ch : body) ch = static_cast<char>('!' + rng() % 90);
      char hex[kSignatureHexSize];
      mac.Sign(timestamp, nonce, body, hex);
      Result<std::string> want = crypto::SignMerchantRequest(secret, "POST", "/v1/payments",
                                                             std::stoll(timestamp), nonce, body);
      ASSERT_TRUE(want.ok());
      ASSERT_EQ(std::string_view(hex, sizeof hex), *want) << secret_size << " " << round;
    }
  }
}

// A request built in place has the bytes of the format, written here the
// plain way (strings appended, crypto's signer), for requests of numbers
// with 1 to 20 digits and a timestamp of any length.
TEST(BenchHttpRequest, BytesOfTheFormat) {
  BenchMerchant m{"SHOP01", crypto::SecretBytes(crypto::Bytes(32, 0x5a)), {}, {}};
  m.mac.Key(m.secret.view());
  BenchCard card{"9408010000000016", "3011", "489", 410, "KPW", {}};
  card.body_middle =
      R"(,"capture":"manual","card":{"cvv2":"489","expiry":"3011","pan":"9408010000000016"},)"
      R"("currency":"KPW","order_ref":")";
  Connection c;
  c.merchant = &m;
  c.cards = {&card};
  c.order_ref_prefix = "bench-1796000000-255-";
  c.head_prefix =
      "POST /v1/payments HTTP/1.1\r\nHost: narae\r\nContent-Type: application/json\r\n"
      "X-Narae-Key-Id: SHOP01\r\nIdempotency-Key: ";
  c.request_capacity =
      c.head_prefix.size() + 3 * (c.order_ref_prefix.size() + 20) + card.body_middle.size() + 256;
  c.request = std::make_unique<char[]>(c.request_capacity);
  for (uint64_t n : {uint64_t{0}, uint64_t{9}, uint64_t{96}, uint64_t{12345}, UINT64_MAX}) {
    for (int64_t now_s : {int64_t{0}, int64_t{1'796'000'000}, INT64_MAX}) {
      c.n = n;
      BuildRequest(c, now_s);
      const std::string ref = c.order_ref_prefix + std::to_string(n);
      const std::string body =
          R"({"amount":)" + std::to_string(1 + n % 97) + card.body_middle + ref + R"("})";
      const std::string nonce = "nonce-" + ref.substr(6);
      Result<std::string> sig =
          crypto::SignMerchantRequest(m.secret.view(), "POST", "/v1/payments", now_s, nonce, body);
      ASSERT_TRUE(sig.ok());
      const std::string want =
          c.head_prefix + ref + "\r\nX-Narae-Timestamp: " + std::to_string(now_s) +
          "\r\nX-Narae-Nonce: " + nonce + "\r\nX-Narae-Signature: " + *sig +
          "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
      EXPECT_EQ(std::string_view(c.request.get(), c.request_size), want);
      EXPECT_EQ(c.order_ref(), ref);
      EXPECT_EQ(c.n, n + 1);
      EXPECT_EQ(c.sent, 0u);
    }
  }
}

// An io_uring where this kernel offers one (the loops' tests of kUring are
// skipped where it does not).
bool HaveUring() { return UringRing().Init(2); }

// A loopback server taking the generator's connections one at a time: it
// reads each request whole and answers it with `answer(request)`; "" closes
// the connection.
class FakeServer {
 public:
  // `pieces` > 1: each answer is written in that many parts, 2 ms apart.
  explicit FakeServer(std::function<std::string(const std::string&)> answer, size_t pieces = 1)
      : answer_(std::move(answer)), pieces_(pieces) {
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
            if (answer.empty() || !SendInPieces(c, answer)) break;
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

  bool SendInPieces(int c, std::string_view answer) const {
    const size_t piece = answer.size() / pieces_ + 1;
    for (size_t at = 0; at < answer.size(); at += piece) {
      if (at > 0) std::this_thread::sleep_for(std::chrono::milliseconds(2));
      const std::string_view part = answer.substr(at, piece);
      if (::send(c, part.data(), part.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(part.size())) {
        return false;
      }
    }
    return true;
  }

  std::function<std::string(const std::string&)> answer_;
  size_t pieces_;
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
                  uint32_t threads, IoEngine engine) {
  BenchHttpArgs args;
  args.http = address;
  args.credentials = demo;
  args.connections = connections;
  args.threads = threads;
  args.duration_s = 1;
  args.json = true;
  ::testing::internal::CaptureStdout();
  BenchRun r;
  r.code = RunBenchHttpWith(args, engine);
  std::fflush(stdout);
  r.figures = nlohmann::json::parse(::testing::internal::GetCapturedStdout(), nullptr, false);
  return r;
}

std::string EngineName(const ::testing::TestParamInfo<IoEngine>& info) {
  return info.param == IoEngine::kUring ? "io_uring" : "epoll";
}

// The figures' "io": the loop the run's threads used.
std::string IoOf(IoEngine engine) { return engine == IoEngine::kUring ? "io_uring" : "epoll"; }

class BenchHttpServe : public ::testing::TestWithParam<IoEngine> {
 protected:
  void SetUp() override {
    if (!harness::HaveBinaries()) GTEST_SKIP() << "narae not built";
    if (GetParam() == IoEngine::kUring && !HaveUring()) GTEST_SKIP() << "no io_uring here";
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
TEST_P(BenchHttpServe, EveryRequestIsFreshlySigned) {
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
  const BenchRun r = RunBench(server.address(), demo_, 4, 2, GetParam());
  ASSERT_FALSE(r.figures.is_discarded());
  EXPECT_EQ(r.code, 0) << r.figures.dump();
  EXPECT_EQ(r.figures["io"], IoOf(GetParam()));
  EXPECT_EQ(r.figures["errors"], 0u) << r.figures.dump();
  EXPECT_GT(r.figures["approved"].get<uint64_t>(), 50u);
  std::lock_guard<std::mutex> lock(mu);
  EXPECT_EQ(refused, 0u);
  EXPECT_EQ(r.figures["approved"].get<uint64_t>(), requests);
}

// Answers that are not what was asked for are errors, never authorizations.
TEST_P(BenchHttpServe, MalformedAnswersCountAsErrors) {
  const std::vector<std::string> answers = {
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",  // no authorization in it
      Answer("HTTP/1.1 201 Created", R"({"status":"authorized","order_ref":"bench-other"})"),
      "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}{}",  // bytes not asked for
      "garbage\r\n\r\n",
      "",  // the server closes the connection
  };
  for (const std::string& answer : answers) {
    FakeServer server([&](const std::string&) { return answer; });
    const BenchRun r = RunBench(server.address(), demo_, 2, 1, GetParam());
    ASSERT_FALSE(r.figures.is_discarded()) << answer;
    EXPECT_EQ(r.code, 1) << answer;
    EXPECT_EQ(r.figures["approved"], 0u) << answer;
    EXPECT_EQ(r.figures["errors"], 2u) << answer << r.figures.dump();  // each connection's
  }
}

// Answers that come in pieces (the head, then the body a moment later) are
// put together: each connection's receive is queued again until the
// answer is whole.
TEST_P(BenchHttpServe, AnswersInPiecesAreReassembled) {
  FakeServer server(
      [&](const std::string& req) {
        const std::string body = req.substr(req.find("\r\n\r\n") + 4);
        const size_t ref = body.find("\"order_ref\":\"");
        const std::string order_ref = body.substr(ref + 13, body.find('"', ref + 13) - ref - 13);
        return Answer("HTTP/1.1 201 Created",
                      R"({"status":"authorized","order_ref":")" + order_ref + "\"}");
      },
      /*pieces=*/3);
  const BenchRun r = RunBench(server.address(), demo_, 3, 1, GetParam());
  ASSERT_FALSE(r.figures.is_discarded());
  EXPECT_EQ(r.code, 0) << r.figures.dump();
  EXPECT_EQ(r.figures["errors"], 0u) << r.figures.dump();
  EXPECT_GT(r.figures["approved"].get<uint64_t>(), 10u) << r.figures.dump();
}

INSTANTIATE_TEST_SUITE_P(Engines, BenchHttpServe,
                         ::testing::Values(IoEngine::kEpoll, IoEngine::kUring), EngineName);

// Where the kernel has io_uring, a run uses it unasked.
TEST(BenchHttpIo, UringChosenWhereTheKernelHasIt) {
  if (!harness::HaveBinaries()) GTEST_SKIP() << "narae not built";
  TempDir dir;
  const std::string demo = dir.Sub("demo.json");
  ASSERT_TRUE(harness::SeedDemo(dir.Sub("data"), demo, 2));
  FakeServer server([&](const std::string&) { return Answer("HTTP/1.1 402 x", "{}"); });
  const BenchRun r = RunBench(server.address(), demo, 2, 2, IoEngine::kAuto);
  ASSERT_FALSE(r.figures.is_discarded());
  EXPECT_EQ(r.figures["errors"], 0u) << r.figures.dump();
  EXPECT_GT(r.figures["declined"].get<uint64_t>(), 0u) << r.figures.dump();
  EXPECT_EQ(r.figures["io"], HaveUring() ? "io_uring" : "epoll");
}

// The real switch: every request of a second's load is a durable
// authorization (none refused for its signature, nonce or key).
class BenchHttpLive : public ::testing::TestWithParam<IoEngine> {};

TEST_P(BenchHttpLive, EveryRequestAuthorizedByTheSwitch) {
  if (!harness::HaveBinaries()) GTEST_SKIP() << "narae-switch or narae not built";
  if (GetParam() == IoEngine::kUring && !HaveUring()) GTEST_SKIP() << "no io_uring here";
  TempDir dir;
  const std::string data = dir.Sub("data"), demo = dir.Sub("demo.json");
  ASSERT_EQ(harness::RunCommand(harness::NaraeBin() + " demo seed --bench --data " + data +
                                " --out " + demo + " --customers 4 >/dev/null"),
            0);
  harness::SwitchProcess sw;
  ASSERT_TRUE(sw.Start(data, {"--http-listen", "127.0.0.1:0"}));
  const BenchRun r =
      RunBench("127.0.0.1:" + std::to_string(sw.http_port()), demo, 8, 2, GetParam());
  ASSERT_FALSE(r.figures.is_discarded());
  EXPECT_EQ(r.code, 0) << r.figures.dump();
  EXPECT_EQ(r.figures["io"], IoOf(GetParam()));
  EXPECT_EQ(r.figures["errors"], 0u) << r.figures.dump();
  EXPECT_EQ(r.figures["declined"], 0u) << r.figures.dump();
  EXPECT_GT(r.figures["approved"].get<uint64_t>(), 20u) << r.figures.dump();
  EXPECT_EQ(sw.Stop(), 0);
}

INSTANTIATE_TEST_SUITE_P(Engines, BenchHttpLive,
                         ::testing::Values(IoEngine::kEpoll, IoEngine::kUring), EngineName);

}  // namespace
}  // namespace narae::tools
