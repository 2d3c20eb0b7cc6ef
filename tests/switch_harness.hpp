// The reliability harness (docs/reliability.md): the real narae-switch
// binary as a child process on a seeded demo bank, a blocking ISO 8583
// client, the demo credentials and builders for signed requests.
//
// Used by tests/switch_crash_test.cpp, switch_fault_test.cpp,
// switch_badinput_test.cpp and switch_security_test.cpp. The HTTP API
// (issue 5) plugs in here: an HttpClient next to IsoClient, and
// SwitchProcess::Start passing --http-listen 127.0.0.1:0 and parsing the
// HTTP port from the same startup line; the tests then add HTTP rows / HTTP
// drivers beside the ISO ones.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "crypto/crypto.hpp"
#include "ledger/status.hpp"
#include "switch/authorizer.hpp"
#include "switch/iso8583.hpp"

namespace narae::switching::harness {

using Clock = std::chrono::steady_clock;

inline std::string NaraeBin() { return std::string(NARAE_BIN_DIR) + "/tools/narae"; }
inline std::string SwitchBin() { return std::string(NARAE_BIN_DIR) + "/switch/narae-switch"; }
inline bool HaveBinaries() {
  return ::access(NaraeBin().c_str(), X_OK) == 0 && ::access(SwitchBin().c_str(), X_OK) == 0;
}
// NARAE_SANITIZED=1 (tools/test's ASan stage): tests scale their rounds down.
inline bool Sanitized() {
  const char* v = std::getenv("NARAE_SANITIZED");
  return v != nullptr && std::string(v) == "1";
}
inline uint32_t EnvOr(const char* name, uint32_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return static_cast<uint32_t>(std::strtoul(v, nullptr, 10));
}

inline std::string Slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline int RunCommand(const std::string& command) {
  const int status = std::system(command.c_str());
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// `narae demo seed` into `data`, credentials in `demo_json`.
inline bool SeedDemo(const std::string& data, const std::string& demo_json, int customers) {
  return RunCommand(NaraeBin() + " demo seed --data " + data + " --out " + demo_json +
                    " --customers " + std::to_string(customers) + " >/dev/null") == 0;
}

// ---------------------------------------------------------------------------
// A blocking loopback client on a plain socket.
class IsoClient {
 public:
  // `receive_buffer_bytes` > 0 sets SO_RCVBUF before connecting: a client
  // that takes its replies slowly.
  explicit IsoClient(uint16_t port, int receive_buffer_bytes = 0) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    NARAE_CHECK(fd_ >= 0);
    if (receive_buffer_bytes > 0) {
      NARAE_CHECK(::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &receive_buffer_bytes,
                               sizeof(receive_buffer_bytes)) == 0);
    }
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
  }
  ~IsoClient() { Close(); }
  IsoClient(const IsoClient&) = delete;
  IsoClient& operator=(const IsoClient&) = delete;

  bool connected() const { return connected_; }
  int fd() const { return fd_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  bool SendRaw(const std::vector<uint8_t>& bytes) {
    size_t sent = 0;
    while (sent < bytes.size()) {
      const ssize_t n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
      if (n <= 0) return false;
      sent += static_cast<size_t>(n);
    }
    return true;
  }
  bool ReadExact(uint8_t* out, size_t n, int timeout_ms) {
    size_t got = 0;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (got < n) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      const ssize_t r = ::recv(fd_, out + got, n - got, 0);
      if (r <= 0) return false;
      got += static_cast<size_t>(r);
    }
    return true;
  }
  std::optional<Message> Recv(int timeout_ms = 5000) {
    uint8_t header[2];
    if (!ReadExact(header, 2, timeout_ms)) return std::nullopt;
    const size_t len = (size_t{header[0]} << 8) | header[1];
    std::vector<uint8_t> body(len);
    if (!ReadExact(body.data(), len, timeout_ms)) return std::nullopt;
    Result<Message> m = Unpack(body);
    if (!m.ok()) return std::nullopt;
    return std::move(m).value();
  }
  std::optional<Message> Call(const std::vector<uint8_t>& frame, int timeout_ms = 5000) {
    if (!SendRaw(frame)) return std::nullopt;
    return Recv(timeout_ms);
  }
  // True when the peer closed the connection within timeout_ms (data
  // received before the close is skipped).
  bool WaitClosed(int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    uint8_t buf[4096];
    for (;;) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
      if (left.count() <= 0) return false;
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return false;
      const ssize_t r = ::recv(fd_, buf, sizeof(buf), 0);
      if (r <= 0) return true;
    }
  }

 private:
  int fd_ = -1;
  bool connected_ = false;
};

// ---------------------------------------------------------------------------
// narae-switch as a child process.
class SwitchProcess {
 public:
  SwitchProcess() = default;
  ~SwitchProcess() { Kill(); }
  SwitchProcess(const SwitchProcess&) = delete;
  SwitchProcess& operator=(const SwitchProcess&) = delete;

  // Starts `narae-switch --data data --iso-listen 127.0.0.1:0 extra...` and
  // waits for its startup line. False when it did not come up.
  bool Start(const std::string& data, const std::vector<std::string>& extra = {},
             int timeout_ms = 15000) {
    std::vector<std::string> argv = {SwitchBin(), "--data", data, "--iso-listen", "127.0.0.1:0"};
    argv.insert(argv.end(), extra.begin(), extra.end());
    int fds[2];
    NARAE_CHECK(::pipe(fds) == 0);
    pid_ = ::fork();
    NARAE_CHECK(pid_ >= 0);
    if (pid_ == 0) {
      ::dup2(fds[1], STDOUT_FILENO);
      ::close(fds[0]);
      ::close(fds[1]);
      std::vector<char*> args;
      for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(fds[1]);
    stdout_fd_ = fds[0];
    startup_line_ = ReadUntil("\n", timeout_ms);
    const size_t at = startup_line_.find("127.0.0.1:");
    if (at == std::string::npos) return false;
    port_ = static_cast<uint16_t>(std::stoi(startup_line_.substr(at + 10)));
    // With --http-listen a second line names the HTTP port.
    if (std::find(extra.begin(), extra.end(), "--http-listen") != extra.end()) {
      constexpr std::string_view kHttp = "HTTP API on 127.0.0.1:";
      auto complete = [&] {
        const size_t at_http = startup_line_.find(kHttp);
        return at_http != std::string::npos &&
               startup_line_.find('\n', at_http) != std::string::npos;
      };
      for (int lines = 0; lines < 4 && !complete(); ++lines) {
        startup_line_ += ReadUntil("\n", timeout_ms);
      }
      const size_t h = startup_line_.find(kHttp);
      if (h == std::string::npos) return false;
      http_port_ = static_cast<uint16_t>(std::stoi(startup_line_.substr(h + kHttp.size())));
    }
    return true;
  }
  uint16_t port() const { return port_; }
  uint16_t http_port() const { return http_port_; }  // 0 without --http-listen
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }

  // SIGKILL and reap (no-op when not running).
  void Kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    Reset();
  }
  // SIGTERM and wait; the exit code, 128+signal, or -1 on timeout (then SIGKILL).
  int Stop(int timeout_ms = 20000) {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    const int code = WaitExit(timeout_ms);
    Reset();
    return code;
  }
  void SendSignal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
  }
  int WaitExit(int timeout_ms) {
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    while (Clock::now() < deadline) {
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        Reset();
        return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    Reset();
    return -1;
  }

 private:
  std::string ReadUntil(const std::string& needle, int timeout_ms) {
    std::string out;
    const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
    char buf[512];
    while (out.find(needle) == std::string::npos && Clock::now() < deadline) {
      pollfd p{stdout_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const ssize_t n = ::read(stdout_fd_, buf, sizeof(buf));
      if (n <= 0) break;
      out.append(buf, static_cast<size_t>(n));
    }
    return out;
  }
  void Reset() {
    if (stdout_fd_ >= 0) ::close(stdout_fd_);
    stdout_fd_ = -1;
    pid_ = -1;
    port_ = 0;
    http_port_ = 0;
  }

  pid_t pid_ = -1;
  int stdout_fd_ = -1;
  uint16_t port_ = 0;
  uint16_t http_port_ = 0;
  std::string startup_line_;
};

// ---------------------------------------------------------------------------
// demo.json (docs/authorization.md).
struct DemoTerminal {
  std::string id;           // 8 characters
  std::string merchant_id;  // as issued
  std::string field42;      // padded to 15
  std::string mcc;
  std::vector<uint16_t> currencies;
  crypto::SecretBytes tpk;
  crypto::SecretBytes mac_key;  // empty: no MAC
};
struct DemoCard {
  std::string pan, expiry, cvv2, pin;
  uint16_t currency = 0;
  std::string account_id;
};
struct DemoSim {
  std::string token_id;
  crypto::SecretBytes key;
  uint16_t currency = 0;
};
struct Demo {
  nlohmann::json doc;
  std::vector<DemoTerminal> terminals;
  std::vector<DemoCard> cards;
  std::vector<DemoSim> sims;
  const DemoTerminal& Terminal(std::string_view id) const {
    for (const DemoTerminal& t : terminals) {
      if (t.id == id) return t;
    }
    NARAE_CHECK(false);
    return terminals.front();
  }
  const DemoCard& Card(uint16_t currency, size_t nth = 0) const {
    for (const DemoCard& c : cards) {
      if (c.currency == currency && nth-- == 0) return c;
    }
    NARAE_CHECK(false);
    return cards.front();
  }
};

inline crypto::SecretBytes SecretHex(const std::string& hex) {
  Result<crypto::SecretBytes> s = crypto::SecretFromHex(hex);
  NARAE_CHECK(s.ok());
  return std::move(s).value();
}

inline Demo LoadDemo(const std::string& path) {
  Demo d;
  d.doc = nlohmann::json::parse(Slurp(path));
  for (const auto& m : d.doc.at("merchants")) {
    for (const auto& t : m.at("terminals")) {
      DemoTerminal term;
      term.id = t.at("id").get<std::string>();
      term.merchant_id = m.at("id").get<std::string>();
      term.field42 = term.merchant_id;
      term.field42.resize(15, ' ');
      term.mcc = m.value("mcc", "0000");
      for (const auto& c : m.at("currencies")) term.currencies.push_back(c.get<uint16_t>());
      term.tpk = SecretHex(t.at("tpk_hex").get<std::string>());
      const std::string mac = t.value("mac_key_hex", "");
      if (!mac.empty()) term.mac_key = SecretHex(mac);
      d.terminals.push_back(std::move(term));
    }
  }
  for (const auto& k : d.doc.at("cards")) {
    d.cards.push_back({k.at("pan").get<std::string>(), k.at("expiry").get<std::string>(),
                       k.at("cvv2").get<std::string>(), k.at("pin").get<std::string>(),
                       k.at("currency").get<uint16_t>(), k.at("account_id").get<std::string>()});
  }
  for (const auto& s : d.doc.at("sims")) {
    d.sims.push_back({s.at("token_id").get<std::string>(),
                      SecretHex(s.at("sim_key_hex").get<std::string>()),
                      s.at("currency").get<uint16_t>()});
  }
  return d;
}

// ---------------------------------------------------------------------------
// Request builders.
inline std::string UtcNow(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  return std::string(buf, std::strftime(buf, sizeof(buf), format, &tm));
}

inline int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// Fields 7, 11, 41, 42 (and 12/13) for terminal `t`.
inline void SetHeader(Message* m, const DemoTerminal& t, uint32_t stan,
                      const std::string& field7 = UtcNow("%m%d%H%M%S")) {
  m->Set(7, field7);
  m->Set(11, FormatDigits(stan, 6).value());
  m->Set(12, field7.substr(4, 6));
  m->Set(13, field7.substr(0, 4));
  m->Set(41, t.id);
  m->Set(42, t.field42);
}

// A card payment with a CVV2 (0200 purchase or 0100 hold).
inline Message CardRequest(const std::string& mti, const DemoTerminal& t, const DemoCard& c,
                           uint32_t stan, uint64_t amount_minor) {
  Message m(mti);
  m.Set(2, c.pan);
  m.Set(3, "000000");
  m.Set(4, FormatAmount(amount_minor).value());
  m.Set(14, c.expiry);
  m.Set(18, t.mcc);
  m.Set(22, "012");
  m.Set(48, "CVV203" + c.cvv2);
  m.Set(49, FormatDigits(c.currency, 3).value());
  SetHeader(&m, t, stan);
  return m;
}

// A card purchase with the PIN (format 0 under the terminal's TPK).
inline Message PinPurchase(const DemoTerminal& t, const DemoCard& c, uint32_t stan,
                           uint64_t amount_minor, const std::string& pin) {
  Message m = CardRequest("0200", t, c, stan, amount_minor);
  m.Clear(48);
  m.Set(22, "011");
  Result<crypto::Bytes> block =
      crypto::EncryptPinBlock(crypto::PinBlockFormat::kIso0, t.tpk, pin, c.pan);
  NARAE_CHECK(block.ok());
  m.SetBytes(52, *block);
  return m;
}

// A SIM token payment (field 62) with the next counter.
inline Message SimPurchase(const DemoTerminal& t, const DemoSim& s, uint64_t counter, uint32_t stan,
                           uint64_t amount_minor) {
  const std::time_t now = std::time(nullptr);
  crypto::SimPaymentFields pf;
  pf.token_id = s.token_id;
  pf.counter = counter;
  pf.amount_minor = amount_minor;
  pf.currency = s.currency;
  pf.merchant_id = t.merchant_id;
  pf.unix_time_s = static_cast<int64_t>(now);
  Result<crypto::Bytes> cryptogram = crypto::SimCryptogram(s.key, pf);
  NARAE_CHECK(cryptogram.ok() && cryptogram->size() == kSimCryptogramBytes);
  SimTokenData token;
  token.token_id = s.token_id;
  token.counter = counter;
  std::copy(cryptogram->begin(), cryptogram->end(), token.cryptogram.begin());
  token.time_unix_s = static_cast<uint64_t>(now);
  Message m("0200");
  m.Set(2, s.token_id);
  m.Set(3, "000000");
  m.Set(4, FormatAmount(amount_minor).value());
  m.Set(18, t.mcc);
  m.Set(22, "071");
  m.Set(49, FormatDigits(s.currency, 3).value());
  m.Set(62, FormatSimToken(token).value());
  SetHeader(&m, t, stan);
  return m;
}

// A follow-up (0220 completion, 0400 reversal) of `original`.
inline Message FollowUp(const std::string& mti, const Message& original, uint32_t stan,
                        uint64_t amount_minor, const DemoTerminal& t) {
  Message m(mti);
  OriginalData od;
  od.mti = original.mti();
  od.stan = std::string(original.Get(11));
  od.transmission_datetime = std::string(original.Get(7));
  od.acquirer_id = std::string(11, '0');
  od.forwarder_id = std::string(11, '0');
  m.Set(2, original.Get(2));
  m.Set(3, "000000");
  m.Set(4, FormatAmount(amount_minor).value());
  m.Set(49, original.Get(49));
  m.Set(90, FormatOriginalData(od).value());
  SetHeader(&m, t, stan);
  return m;
}

// MAC (field 64, or 128 when a field above 64 is present) with `mac_key`
// when not empty, then pack and frame.
inline std::vector<uint8_t> SignFrame(Message m, const crypto::SecretBytes& mac_key) {
  if (mac_key.empty()) return PackFramed(m).value();
  const int mac_field = m.NextField(64) != 0 ? 128 : 64;
  const uint8_t zeros[8] = {};
  m.SetBytes(mac_field, zeros);
  std::vector<uint8_t> body = Pack(m).value();
  Result<crypto::Bytes> mac =
      crypto::Iso8583Mac(mac_key, crypto::ByteView(body.data(), body.size() - 8));
  NARAE_CHECK(mac.ok());
  std::copy(mac->begin(), mac->end(), body.end() - 8);
  return Frame(body).value();
}
inline std::vector<uint8_t> SignFrame(const Message& m, const DemoTerminal& t) {
  return SignFrame(m, t.mac_key);
}

inline Message Echo(uint32_t stan) {
  Message m("0800");
  m.Set(7, UtcNow("%m%d%H%M%S"));
  m.Set(11, FormatDigits(stan, 6).value());
  m.Set(70, "301");
  return m;
}

// Fills `m` (MTI, terminal and merchant already set) as a payment by the SIM
// token `token_id` whose key is `sim_key_hex` (an EnrolledSim's):
// fields 2, 3, 4, 49 (KPW) and 62, its cryptogram over `merchant_id` (field
// 42 trimmed) at `unix_time_s`.
inline void SetSimPayment(Message& m, const std::string& token_id, const std::string& sim_key_hex,
                          uint64_t amount_minor, uint64_t counter, const std::string& merchant_id,
                          int64_t unix_time_s) {
  m.Set(2, token_id);
  m.Set(3, "000000");
  m.Set(4, *FormatAmount(amount_minor));
  m.Set(49, "408");
  crypto::SimPaymentFields f;
  f.token_id = token_id;
  f.counter = counter;
  f.amount_minor = amount_minor;
  f.currency = 408;
  f.merchant_id = merchant_id;
  f.unix_time_s = unix_time_s;
  Result<crypto::Bytes> key = crypto::FromHex(sim_key_hex);
  NARAE_CHECK(key.ok());
  Result<crypto::Bytes> crypt = crypto::SimCryptogram(*key, f);
  NARAE_CHECK(crypt.ok());
  SimTokenData t;
  t.token_id = token_id;
  t.counter = counter;
  std::copy(crypt->begin(), crypt->end(), t.cryptogram.begin());
  t.time_unix_s = static_cast<uint64_t>(unix_time_s);
  m.Set(62, *FormatSimToken(t));
}

}  // namespace narae::switching::harness
