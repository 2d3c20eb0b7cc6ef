// `narae bench switch`: the switch load generator (docs/switch.md, "Load generator").
//
// Plays the terminals, cards and SIMs of a demo.json against a running
// narae-switch over ISO 8583: purchases with CVV2 or PIN, authorizations
// followed by completions, reversals, refunds, SIM-token payments and a few
// deliberate declines (wrong CVV2). Each connection is a terminal; STANs
// increase per terminal; each SIM is used by one connection with at most one
// request in flight, so its counters stay ordered. Closed loop with --depth
// requests in flight per connection, or open loop at --rate requests/s in
// total (latency then counts from the scheduled send time).
#include <utility>
// GCC's TSan cannot see Asio's std::atomic_thread_fence (std_fenced_block);
// the scheduler's mutexes order the handlers. Only the warning is silenced.
#if defined(__SANITIZE_THREAD__)
#pragma GCC diagnostic ignored "-Wtsan"
#endif
// clang-format off
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
// clang-format on

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "crypto/crypto.hpp"
#include "switch/iso8583.hpp"
#include "tools/bench_http.hpp"
#include "tools/cli.hpp"
#include "tools/percentile.hpp"

namespace narae::tools {
namespace {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;
using switching::Message;
using Json = nlohmann::json;

constexpr uint32_t kConnectionsMax = 10000;
constexpr uint32_t kDepthMax = 1024;
constexpr uint32_t kOpenLoopInFlightMax = 4096;  // per connection, with --rate
constexpr size_t kFollowUpsMax = 256;            // queued completions/reversals/refunds
constexpr size_t kSamplesMax = 50'000'000;       // latency samples kept per thread
constexpr size_t kTraceRowsMax = 10'000'000;     // --latency-trace rows kept per thread
constexpr size_t kReadBufferBytes = 1 << 16;

struct Args {
  std::string iso;
  std::string credentials;
  uint32_t connections = 8;
  uint32_t duration_s = 10;
  uint32_t rate = 0;                // total requests/s; 0 = closed loop
  std::string arrivals = "spread";  // open loop: spread | burst
  uint32_t batch_us = 0;            // open loop: an acquirer host's link (0 = off)
  uint32_t depth = 8;
  uint32_t threads = 1;
  uint32_t decline_percent = 1;
  bool echo = false;  // only 0800 echo tests (301): the network path, no ledger
  uint64_t seed = 1;
  bool json = false;
  bool no_save_counters = false;
  std::string latency_trace;  // CSV of every answer (empty = none)
  // TLS (--tls): the server's chain is verified against ca_file (or the
  // system's CAs); cert_file + key_file = the client certificate (mutual TLS).
  bool tls = false;
  std::string ca_file, cert_file, key_file;
};

// ---- Credentials (demo.json) ----------------------------------------------
struct Terminal {
  std::string id;           // 8 characters (field 41)
  std::string merchant_id;  // as issued (SIM cryptogram)
  std::string field42;      // merchant id padded to 15 (field 42)
  std::string mcc;
  std::vector<uint16_t> currencies;
  crypto::SecretBytes tpk;
  crypto::SecretBytes mac_key;  // empty: no MAC
  std::atomic<uint32_t> stan{0};
};
struct Card {
  std::string pan, expiry, cvv2, pin;
  uint16_t currency = 0;
};
struct Sim {
  std::string token_id;
  crypto::SecretBytes key;
  uint64_t counter = 0;  // the last counter used
  uint16_t currency = 0;
  bool busy = false;  // a request in flight (owned by one connection)
};
struct Credentials {
  Json doc;
  std::vector<std::unique_ptr<Terminal>> terminals;
  std::vector<Card> cards;
  std::vector<Sim> sims;
};

Result<Credentials> LoadCredentials(const std::string& path) {
  std::ifstream in(path);
  if (!in) return Status::IOError("cannot read " + path);
  Credentials c;
  c.doc = Json::parse(in, nullptr, false);
  if (c.doc.is_discarded() || !c.doc.is_object())
    return Status::InvalidArgument(path + ": not JSON");
  try {
    for (const Json& m : c.doc.at("merchants")) {
      for (const Json& t : m.at("terminals")) {
        auto term = std::make_unique<Terminal>();
        term->id = t.at("id").get<std::string>();
        term->merchant_id = m.at("id").get<std::string>();
        term->field42 = term->merchant_id;
        term->field42.resize(15, ' ');
        term->mcc = m.value("mcc", "0000");
        for (const Json& cur : m.at("currencies")) term->currencies.push_back(cur.get<uint16_t>());
        Result<crypto::SecretBytes> tpk = crypto::SecretFromHex(t.at("tpk_hex").get<std::string>());
        if (!tpk.ok()) return tpk.status();
        term->tpk = std::move(*tpk);
        const std::string mac = t.value("mac_key_hex", "");
        if (!mac.empty()) {
          Result<crypto::SecretBytes> k = crypto::SecretFromHex(mac);
          if (!k.ok()) return k.status();
          term->mac_key = std::move(*k);
        }
        if (term->id.size() != 8) return Status::InvalidArgument("terminal id must be 8 chars");
        c.terminals.push_back(std::move(term));
      }
    }
    for (const Json& k : c.doc.at("cards")) {
      c.cards.push_back({k.at("pan").get<std::string>(), k.at("expiry").get<std::string>(),
                         k.at("cvv2").get<std::string>(), k.at("pin").get<std::string>(),
                         k.at("currency").get<uint16_t>()});
    }
    for (const Json& s : c.doc.at("sims")) {
      Sim sim;
      sim.token_id = s.at("token_id").get<std::string>();
      Result<crypto::SecretBytes> key =
          crypto::SecretFromHex(s.at("sim_key_hex").get<std::string>());
      if (!key.ok()) return key.status();
      sim.key = std::move(*key);
      sim.counter = s.at("counter").get<uint64_t>();
      sim.currency = s.at("currency").get<uint16_t>();
      c.sims.push_back(std::move(sim));
    }
  } catch (const Json::exception& e) {
    return Status::InvalidArgument(path + ": " + e.what());
  }
  if (c.terminals.empty() || c.cards.empty()) {
    return Status::InvalidArgument(path + ": needs at least one terminal and one card");
  }
  return c;
}

// Writes the SIM counters back so the next run continues above them.
Status SaveCounters(const std::string& path, Credentials& c) {
  for (size_t i = 0; i < c.sims.size() && i < c.doc["sims"].size(); ++i) {
    c.doc["sims"][i]["counter"] = c.sims[i].counter;
  }
  const std::string tmp = path + ".tmp";
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << c.doc.dump(2) << "\n";
    if (!out) return Status::IOError("cannot write " + tmp);
  }
  std::error_code ec;
  std::filesystem::rename(tmp, path, ec);
  if (ec) return Status::IOError("rename " + tmp + ": " + ec.message());
  return Status::Ok();
}

// ---- Requests --------------------------------------------------------------
enum class Kind : uint8_t {
  kPurchaseCvv2,
  kPurchasePin,
  kAuthorization,
  kCompletion,
  kReversal,
  kRefund,
  kSim,
  kWrongCvv2,
  kEcho,
  kCount,
};
constexpr const char* kKindNames[] = {"purchase_cvv2", "purchase_pin", "authorization",
                                      "completion",    "reversal",     "refund",
                                      "sim",           "wrong_cvv2",   "echo"};
constexpr size_t kKinds = static_cast<size_t>(Kind::kCount);

// What a follow-up (completion, reversal, refund) refers to.
struct Original {
  std::string mti, stan, field7, pan;
  uint64_t amount_minor = 0;
  uint16_t currency = 0;
};
struct FollowUp {
  Kind kind;
  Original original;
};

struct InFlight {
  Clock::time_point sent;
  Kind kind;
  int sim_index = -1;  // index into Credentials::sims, released on the reply
  Original request;    // to build follow-ups from
};

// --latency-trace: one row per answer (16 bytes).
struct TraceRow {
  Clock::time_point sent;  // scheduled (open loop) or written (closed loop)
  uint32_t latency_us;
  std::array<char, 2> code;  // field 39 ("--" when missing)
};

// Per-thread results, merged at the end.
struct Results {
  uint64_t sent = 0;
  uint64_t answered = 0;
  uint64_t approved = 0;
  uint64_t skipped = 0;  // open loop: in-flight cap reached at a send time
  uint64_t errors = 0;   // connection or encoding errors
  uint64_t unanswered = 0;
  std::map<std::string, uint64_t> codes;
  std::array<uint64_t, kKinds> kinds_sent{};
  std::array<uint64_t, kKinds> kinds_approved{};
  std::vector<uint32_t> latency_us;
  std::vector<TraceRow> trace;  // --latency-trace only
};

std::atomic<uint64_t> g_answered{0};  // progress line
std::atomic<uint64_t> g_approved{0};
std::atomic<uint64_t> g_rrn{0};

std::string Utc(const char* format, std::time_t t) {
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof(buf), format, &tm);
  return std::string(buf, n);
}
std::string Local(const char* format, std::time_t t) {
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[32];
  const size_t n = std::strftime(buf, sizeof(buf), format, &tm);
  return std::string(buf, n);
}

class Pacer;

class Connection {
 public:
  Connection(asio::io_context& ioc, ssl::context* tls, const Args& args, Credentials& creds,
             Terminal& terminal, std::vector<int> sims, uint64_t seed, Results& results,
             Clock::time_point end)
      : socket_(ioc),
        signal_(ioc),
        pace_(ioc),
        args_(args),
        creds_(creds),
        terminal_(terminal),
        sims_(std::move(sims)),
        rng_(seed),
        results_(results),
        end_(end) {
    if (tls != nullptr) tls_.emplace(ioc, *tls);
  }

  asio::awaitable<void> Run(tcp::endpoint endpoint) {
    error_code ec;
    co_await Socket().async_connect(endpoint, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      std::fprintf(stderr, "narae bench switch: connect %s: %s\n", args_.iso.c_str(),
                   ec.message().c_str());
      ++results_.errors;
      results_.unanswered += in_flight_.size();
      in_flight_.clear();
      closed_ = true;
      co_return;
    }
    Socket().set_option(tcp::no_delay(true), ec);
    if (tls_) {
      co_await tls_->async_handshake(ssl::stream_base::client,
                                     asio::redirect_error(asio::use_awaitable, ec));
      if (ec) {
        std::fprintf(stderr, "narae bench switch: TLS handshake with %s: %s\n", args_.iso.c_str(),
                     ec.message().c_str());
        ++results_.errors;
        results_.unanswered += in_flight_.size();
        in_flight_.clear();
        closed_ = true;
        Socket().close(ec);
        co_return;
      }
    }
    connected_ = true;
    auto ex = co_await asio::this_coro::executor;
    asio::co_spawn(ex, Receive(), asio::detached);
    if (args_.rate > 0) {  // open loop: the thread's Pacer calls Emit
      Flush();             // what was scheduled while connecting
      error_code ignored;
      pace_.expires_at(end_);
      co_await pace_.async_wait(asio::redirect_error(asio::use_awaitable, ignored));
    } else {
      co_await Send();
    }
    co_await Drain();
  }

  // Open loop: the request scheduled at `stamp` (its latency counts from
  // there). It joins what waits to be written; one write carries everything
  // that came due while the previous write was in progress.
  // Returns true when the request is the first to wait for the next write
  // (the pacer then calls FlushPending once it has scheduled the rest).
  bool Emit(Clock::time_point stamp) {
    if (closed_) return false;
    if (in_flight_.size() >= kOpenLoopInFlightMax) {
      ++results_.skipped;
      return false;
    }
    const bool first = pending_.empty();
    AppendRequest(stamp, &pending_);
    return first;
  }
  void FlushPending() {
    if (connected_) Flush();
  }
  void set_pacer(Pacer* p) { pacer_ = p; }

 private:
  tcp::socket& Socket() { return tls_ ? tls_->next_layer() : socket_; }

  asio::awaitable<void> WriteAll(asio::const_buffer b, error_code& ec) {
    if (tls_) {
      co_await asio::async_write(*tls_, b, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await asio::async_write(socket_, b, asio::redirect_error(asio::use_awaitable, ec));
    }
  }
  asio::awaitable<size_t> ReadSome(asio::mutable_buffer b, error_code& ec) {
    if (tls_)
      co_return co_await tls_->async_read_some(b, asio::redirect_error(asio::use_awaitable, ec));
    co_return co_await socket_.async_read_some(b, asio::redirect_error(asio::use_awaitable, ec));
  }

  // Writes `pending_` unless a write is in progress (its completion writes
  // what came meanwhile).
  void Flush() {
    if (writing_ || pending_.empty() || closed_) return;
    writing_ = true;
    std::swap(pending_, writing_buf_);
    pending_.clear();
    auto done = [this](const error_code& ec, size_t) {
      writing_ = false;
      if (ec) {
        Fail("write", ec);
        return;
      }
      Flush();
    };
    if (tls_) {
      asio::async_write(*tls_, asio::buffer(writing_buf_), done);
    } else {
      asio::async_write(socket_, asio::buffer(writing_buf_), done);
    }
  }

  // Closed loop: keeps --depth requests in flight until the end time.
  asio::awaitable<void> Send() {
    std::vector<uint8_t> out;
    while (!closed_ && Clock::now() < end_) {  // bounded by --duration
      out.clear();
      const Clock::time_point stamp = Clock::now();
      while (!closed_ && in_flight_.size() >= args_.depth) {
        signal_.expires_at(Clock::time_point::max());
        error_code ec;
        co_await signal_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      }
      while (in_flight_.size() < args_.depth) AppendRequest(stamp, &out);
      if (closed_) break;
      if (out.empty()) continue;
      error_code ec;
      co_await WriteAll(asio::buffer(out), ec);
      if (ec) {
        Fail("write", ec);
        co_return;
      }
    }
  }

  // Waits up to 2 s for the replies still in flight, then closes.
  asio::awaitable<void> Drain() {
    const Clock::time_point drain_end = Clock::now() + std::chrono::seconds(2);
    while (!closed_ && !in_flight_.empty() && Clock::now() < drain_end) {
      signal_.expires_at(drain_end);
      error_code ec;
      co_await signal_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
    }
    results_.unanswered += in_flight_.size();
    in_flight_.clear();
    closed_ = true;
    error_code ec;
    Socket().close(ec);
  }

  asio::awaitable<void> Receive() {
    std::vector<uint8_t> buf(kReadBufferBytes);
    size_t have = 0;
    while (!closed_) {  // ends when the socket closes
      error_code ec;
      const size_t n = co_await ReadSome(asio::buffer(buf.data() + have, buf.size() - have), ec);
      if (ec) {
        if (!closed_) Fail("read", ec);
        co_return;
      }
      have += n;
      size_t pos = 0;
      while (have - pos >= 2) {
        const size_t len = (size_t{buf[pos]} << 8) | buf[pos + 1];
        if (have - pos < 2 + len) break;
        OnResponse({buf.data() + pos + 2, len});
        pos += 2 + len;
      }
      std::memmove(buf.data(), buf.data() + pos, have - pos);
      have -= pos;
      signal_.cancel();
      PollPacer();
    }
  }

  void PollPacer();  // open loop: sends what has come due while the thread is awake

  void Fail(const char* what, const error_code& ec) {
    if (!closed_) {
      std::fprintf(stderr, "narae bench switch: %s: %s\n", what, ec.message().c_str());
      ++results_.errors;
    }
    results_.unanswered += in_flight_.size();
    in_flight_.clear();
    closed_ = true;
    error_code ignored;
    Socket().close(ignored);
    signal_.cancel();
    pace_.cancel();
  }

  void OnResponse(std::span<const uint8_t> body) {
    Result<Message> m = switching::Unpack(body);
    if (!m.ok()) {
      ++results_.errors;
      return;
    }
    Result<uint64_t> stan = switching::ParseDigits(m->Get(11));
    if (!stan.ok()) {
      ++results_.errors;
      return;
    }
    auto it = in_flight_.find(static_cast<uint32_t>(*stan));
    if (it == in_flight_.end()) {
      ++results_.errors;
      return;
    }
    InFlight f = std::move(it->second);
    in_flight_.erase(it);
    const uint64_t us = static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - f.sent).count());
    if (results_.latency_us.size() < kSamplesMax) {
      results_.latency_us.push_back(static_cast<uint32_t>(std::min<uint64_t>(us, UINT32_MAX)));
    }
    ++results_.answered;
    g_answered.fetch_add(1, std::memory_order_relaxed);
    const std::string rc(m->Get(39));
    ++results_.codes[rc.empty() ? "--" : rc];
    if (!args_.latency_trace.empty() && results_.trace.size() < kTraceRowsMax) {
      TraceRow row{f.sent, static_cast<uint32_t>(std::min<uint64_t>(us, UINT32_MAX)), {'-', '-'}};
      if (rc.size() == 2) row.code = {rc[0], rc[1]};
      results_.trace.push_back(row);
    }
    if (f.sim_index >= 0) creds_.sims[static_cast<size_t>(f.sim_index)].busy = false;
    if (rc != "00") return;
    ++results_.approved;
    ++results_.kinds_approved[static_cast<size_t>(f.kind)];
    g_approved.fetch_add(1, std::memory_order_relaxed);
    PlanFollowUp(f);
  }

  void PlanFollowUp(const InFlight& f) {
    if (follow_ups_.size() >= kFollowUpsMax) return;
    const uint32_t roll = Roll(100);
    if (f.kind == Kind::kAuthorization) {
      follow_ups_.push_back({Kind::kCompletion, f.request});
    } else if (f.kind == Kind::kPurchaseCvv2 || f.kind == Kind::kPurchasePin ||
               f.kind == Kind::kSim) {
      if (roll < 5)
        follow_ups_.push_back({Kind::kReversal, f.request});
      else if (roll < 10)
        follow_ups_.push_back({Kind::kRefund, f.request});
    }
  }

  uint32_t Roll(uint32_t n) { return static_cast<uint32_t>(rng_() % n); }

  std::string NextStan() {
    uint32_t s = terminal_.stan.fetch_add(1, std::memory_order_relaxed) % 999999 + 1;
    while (in_flight_.count(s) != 0) {  // bounded: at most kOpenLoopInFlightMax in flight
      s = terminal_.stan.fetch_add(1, std::memory_order_relaxed) % 999999 + 1;
    }
    return switching::FormatDigits(s, 6).value();
  }

  const Card* PickCard() {
    for (int tries = 0; tries < 16; ++tries) {  // a card in a currency the merchant takes
      const Card& c = creds_.cards[Roll(static_cast<uint32_t>(creds_.cards.size()))];
      if (std::find(terminal_.currencies.begin(), terminal_.currencies.end(), c.currency) !=
          terminal_.currencies.end()) {
        return &c;
      }
    }
    return nullptr;
  }

  int PickSim() {
    for (int idx : sims_) {
      Sim& s = creds_.sims[static_cast<size_t>(idx)];
      if (!s.busy && std::find(terminal_.currencies.begin(), terminal_.currencies.end(),
                               s.currency) != terminal_.currencies.end()) {
        return idx;
      }
    }
    return -1;
  }

  void RefreshTimes(std::time_t now) {
    if (now == times_.second) return;  // the time fields change once a second
    times_.second = now;
    times_.field7 = Utc("%m%d%H%M%S", now);
    times_.field12 = Local("%H%M%S", now);
    times_.field13 = Local("%m%d", now);
  }

  void SetCommon(Message* m, const std::string& stan, std::time_t now) {
    RefreshTimes(now);
    m->Set(7, times_.field7);
    m->Set(11, stan);
    m->Set(12, times_.field12);
    m->Set(13, times_.field13);
    const uint64_t rrn = (static_cast<uint64_t>(now) % 10000) * 100'000'000 +
                         g_rrn.fetch_add(1, std::memory_order_relaxed) % 100'000'000;
    m->Set(37, switching::FormatDigits(rrn, 12).value());
    m->Set(41, terminal_.id);
    m->Set(42, terminal_.field42);
  }

  // Chooses the next request (a follow-up first), builds it and appends its frame.
  void AppendRequest(Clock::time_point stamp, std::vector<uint8_t>* out) {
    const std::time_t now = std::time(nullptr);
    const std::string stan = NextStan();
    Message m;
    InFlight f{stamp, Kind::kPurchaseCvv2, -1, {}};
    if (args_.echo) {
      // An echo test answered by the I/O thread alone: the floor of the
      // latency (network, framing, the I/O threads and this generator).
      f.kind = Kind::kEcho;
      m.set_mti("0800");
      RefreshTimes(now);
      m.Set(7, times_.field7);
      m.Set(11, stan);
      m.Set(70, "301");
    } else if (!follow_ups_.empty()) {
      FollowUp fu = std::move(follow_ups_.front());
      follow_ups_.pop_front();
      f.kind = fu.kind;
      BuildFollowUp(fu, stan, now, &m);
    } else if (!BuildNew(stan, now, &m, &f)) {
      ++results_.errors;
      return;
    }
    if (!args_.echo) SetCommon(&m, stan, now);
    f.request.mti = m.mti();
    f.request.stan = stan;
    f.request.field7 = std::string(m.Get(7));
    // An echo carries no MAC (the switch checks none on network messages).
    Result<std::vector<uint8_t>> framed = args_.echo ? switching::PackFramed(m) : Sign(m);
    if (!framed.ok()) {
      if (f.sim_index >= 0) creds_.sims[static_cast<size_t>(f.sim_index)].busy = false;
      ++results_.errors;
      return;
    }
    out->insert(out->end(), framed->begin(), framed->end());
    ++results_.sent;
    ++results_.kinds_sent[static_cast<size_t>(f.kind)];
    in_flight_.emplace(static_cast<uint32_t>(std::stoul(stan)), std::move(f));
  }

  bool BuildNew(const std::string& stan, std::time_t now, Message* m, InFlight* f) {
    (void)stan;
    const uint32_t roll = Roll(100);
    const uint64_t amount = 100 + Roll(50'000);  // 1.00 .. 500.99
    if (roll >= 70 && roll < 85) {
      const int sim_index = PickSim();
      if (sim_index >= 0) return BuildSim(sim_index, amount, now, m, f);
    }
    const Card* card = PickCard();
    if (card == nullptr) return false;
    Kind kind = Kind::kPurchaseCvv2;
    if (roll < args_.decline_percent) {
      kind = Kind::kWrongCvv2;
    } else if (roll < 35) {
      kind = Kind::kPurchasePin;
    } else if (roll < 50) {
      kind = Kind::kAuthorization;
    }
    f->kind = kind;
    m->set_mti(kind == Kind::kAuthorization ? "0100" : "0200");
    m->Set(2, card->pan);
    m->Set(3, "000000");
    m->Set(4, switching::FormatAmount(amount).value());
    m->Set(14, card->expiry);
    m->Set(18, terminal_.mcc);
    m->Set(49, switching::FormatDigits(card->currency, 3).value());
    if (kind == Kind::kPurchasePin) {
      m->Set(22, "011");
      Result<crypto::Bytes> pin_block = crypto::EncryptPinBlock(
          crypto::PinBlockFormat::kIso0, terminal_.tpk, card->pin, card->pan);
      if (!pin_block.ok()) return false;
      m->SetBytes(52, *pin_block);
    } else {
      m->Set(22, "012");
      std::string cvv2 = card->cvv2;
      if (kind == Kind::kWrongCvv2) cvv2[0] = cvv2[0] == '9' ? '0' : static_cast<char>(cvv2[0] + 1);
      m->Set(48, "CVV203" + cvv2);  // element: tag CVV2, length 03 (docs/authorization.md)
    }
    f->request.pan = card->pan;
    f->request.amount_minor = amount;
    f->request.currency = card->currency;
    return true;
  }

  bool BuildSim(int sim_index, uint64_t amount, std::time_t now, Message* m, InFlight* f) {
    Sim& sim = creds_.sims[static_cast<size_t>(sim_index)];
    crypto::SimPaymentFields pf;
    pf.token_id = sim.token_id;
    pf.counter = sim.counter + 1;
    pf.amount_minor = amount;
    pf.currency = sim.currency;
    pf.merchant_id = terminal_.merchant_id;
    pf.unix_time_s = static_cast<int64_t>(now);
    Result<crypto::Bytes> cryptogram = crypto::SimCryptogram(sim.key, pf);
    if (!cryptogram.ok() || cryptogram->size() != switching::kSimCryptogramBytes) return false;
    switching::SimTokenData token;
    token.token_id = sim.token_id;
    token.counter = pf.counter;
    std::copy(cryptogram->begin(), cryptogram->end(), token.cryptogram.begin());
    token.time_unix_s = static_cast<uint64_t>(now);
    Result<std::string> field62 = switching::FormatSimToken(token);
    if (!field62.ok()) return false;
    sim.counter = pf.counter;
    sim.busy = true;
    f->kind = Kind::kSim;
    f->sim_index = sim_index;
    m->set_mti("0200");
    m->Set(2, sim.token_id);
    m->Set(3, "000000");
    m->Set(4, switching::FormatAmount(amount).value());
    m->Set(18, terminal_.mcc);
    m->Set(22, "071");
    m->Set(49, switching::FormatDigits(sim.currency, 3).value());
    m->Set(62, *field62);
    f->request.pan = sim.token_id;
    f->request.amount_minor = amount;
    f->request.currency = sim.currency;
    return true;
  }

  void BuildFollowUp(const FollowUp& fu, const std::string& stan, std::time_t now, Message* m) {
    (void)stan;
    (void)now;
    const Original& o = fu.original;
    switching::OriginalData od;
    od.mti = o.mti;
    od.stan = o.stan;
    od.transmission_datetime = o.field7;
    od.acquirer_id = std::string(11, '0');
    od.forwarder_id = std::string(11, '0');
    uint64_t amount = o.amount_minor;
    if (fu.kind == Kind::kCompletion) {
      m->set_mti("0220");
      if (Roll(4) == 0) amount = std::max<uint64_t>(1, amount / 2);  // partial completion
      m->Set(3, "000000");
    } else if (fu.kind == Kind::kReversal) {
      m->set_mti("0400");
      m->Set(3, "000000");
    } else {
      m->set_mti("0200");
      m->Set(3, "200000");
      amount = std::max<uint64_t>(1, amount / 3);  // a partial refund
    }
    m->Set(2, o.pan);
    m->Set(4, switching::FormatAmount(amount).value());
    m->Set(49, switching::FormatDigits(o.currency, 3).value());
    m->Set(90, switching::FormatOriginalData(od).value());
  }

  // MAC (field 64, or 128 when a field above 64 is present) for terminals
  // with a MAC key, then pack and frame.
  Result<std::vector<uint8_t>> Sign(Message& m) {
    if (terminal_.mac_key.empty()) return switching::PackFramed(m);
    const int mac_field = m.NextField(64) != 0 ? 128 : 64;
    const uint8_t zeros[8] = {};
    m.SetBytes(mac_field, zeros);
    Result<std::vector<uint8_t>> body = switching::Pack(m);
    if (!body.ok()) return body.status();
    Result<crypto::Bytes> mac =
        crypto::Iso8583Mac(terminal_.mac_key, crypto::ByteView(body->data(), body->size() - 8));
    if (!mac.ok()) return mac.status();
    std::copy(mac->begin(), mac->end(), body->end() - 8);
    return switching::Frame(*body);
  }

  tcp::socket socket_;                           // plain TCP
  std::optional<ssl::stream<tcp::socket>> tls_;  // --tls (its own socket)
  asio::steady_timer signal_;                    // wakes the sender when a reply arrives
  asio::steady_timer pace_;                      // open loop: the end of the run
  const Args& args_;
  Credentials& creds_;
  Terminal& terminal_;
  std::vector<int> sims_;  // indexes of the SIMs this connection owns
  std::mt19937_64 rng_;
  Results& results_;
  Clock::time_point end_;
  std::unordered_map<uint32_t, InFlight> in_flight_;  // by STAN
  std::deque<FollowUp> follow_ups_;                   // <= kFollowUpsMax
  std::vector<uint8_t> pending_;      // open loop: frames waiting for the write in progress
  std::vector<uint8_t> writing_buf_;  // open loop: the frames being written
  bool writing_ = false;
  bool connected_ = false;
  Pacer* pacer_ = nullptr;  // open loop: this thread's
  struct {
    std::time_t second = -1;
    std::string field7, field12, field13;
  } times_;  // SetCommon's fields of the current second
  bool closed_ = false;
};

// Open loop: one pacer per client thread sends its connections' requests on
// a fixed schedule, each request stamped with its scheduled time so latency
// includes any lateness of the generator. --arrivals spread (the default):
// one request every `interval / n` to the thread's n connections in turn,
// so each connection sends every `interval` = connections / rate, the
// connections staggered. --arrivals burst: every connection sends at the
// same instants, `interval` apart (n requests arrive at once). The pacer
// sends what has come due whenever its thread is awake (a reply arrived) and
// otherwise wakes at most once per kPaceTick. --batch-us N: each connection
// plays an acquirer host's link to the switch, carrying many terminals'
// requests and writing what they produced every N us in one write (the
// pacer wakes on that clock only); a request's latency still counts from its
// scheduled time, so the wait for the link's next write is in the figures.
constexpr auto kPaceTick = std::chrono::microseconds(100);
constexpr uint32_t kPaceBurstMax = 65536;  // sends per poll (the rest: on the next)
constexpr uint32_t kRateMax = 10'000'000;  // requests/s: steps stay >= 100 ns
constexpr uint32_t kBatchUsMax = 100'000;  // --batch-us: a link sends at least 10 times a second

class Pacer {
 public:
  Pacer(asio::io_context& ioc, std::vector<Connection*> connections,
        std::chrono::nanoseconds interval, bool burst, std::chrono::microseconds batch,
        Clock::time_point start, Clock::time_point end)
      : timer_(ioc),
        connections_(std::move(connections)),
        burst_(burst),
        interval_(interval),
        batch_(batch),
        start_(start),
        end_(end) {
    NARAE_CHECK(!connections_.empty() && interval_.count() > 0);
    touched_.reserve(connections_.size());
    for (Connection* c : connections_) c->set_pacer(this);
  }

  asio::awaitable<void> Run() {
    const std::chrono::nanoseconds tick = batch_.count() > 0 ? batch_ : kPaceTick;
    while (Next() < end_) {  // bounded: every poll past Next() sends
      timer_.expires_at(std::max(Next(), Clock::now() + tick));
      error_code ec;
      co_await timer_.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      Poll();
    }
  }

  // Sends every request whose time has come: one write per connection.
  void Poll() {
    const Clock::time_point now = Clock::now();
    touched_.clear();
    for (uint32_t n = 0; n < kPaceBurstMax && Next() <= now && Next() < end_; ++n) {
      Connection* c = connections_[sent_ % connections_.size()];
      if (c->Emit(Next())) touched_.push_back(c);  // bounded: each connection once
      ++sent_;
    }
    for (Connection* c : touched_) c->FlushPending();
  }

  // A reply arrived on one of the thread's connections: send what came due,
  // unless the link sends only on its own clock (--batch-us).
  void PollOnReply() {
    if (batch_.count() == 0) Poll();
  }

 private:
  // Request k goes to connection k mod n at start + interval x (k / n) (a
  // rational number of intervals: spread) or at the start of its round (burst).
  Clock::time_point Next() const {
    const uint64_t n = connections_.size();
    const uint64_t round = sent_ / n;
    const uint64_t within = burst_ ? 0 : sent_ % n;
    const int64_t ns = interval_.count();
    return start_ +
           std::chrono::nanoseconds(ns * static_cast<int64_t>(round) +
                                    ns * static_cast<int64_t>(within) / static_cast<int64_t>(n));
  }

  asio::steady_timer timer_;
  std::vector<Connection*> connections_;  // this thread's
  const bool burst_;
  const std::chrono::nanoseconds interval_;  // between a connection's requests
  const std::chrono::microseconds batch_;    // --batch-us: the link's send clock, or 0
  Clock::time_point start_, end_;
  uint64_t sent_ = 0;                 // requests scheduled so far
  std::vector<Connection*> touched_;  // a poll's connections with requests to write
};

void Connection::PollPacer() {
  if (pacer_ != nullptr) pacer_->PollOnReply();
}

Result<tcp::endpoint> Resolve(const std::string& host_port) {
  const size_t colon = host_port.rfind(':');
  if (colon == std::string::npos) return Status::InvalidArgument("--iso must be HOST:PORT");
  asio::io_context ioc;
  tcp::resolver resolver(ioc);
  error_code ec;
  auto results = resolver.resolve(host_port.substr(0, colon), host_port.substr(colon + 1), ec);
  if (ec || results.empty()) return Status::InvalidArgument("cannot resolve " + host_port);
  return results.begin()->endpoint();
}

// --latency-trace FILE: every answer as `sent_us,latency_us,code`, sorted
// by send time (us since the run's start). For where the slow answers are
// in time: a tail spread over the run and one gathered in stalls call for
// different fixes.
Status WriteLatencyTrace(const std::string& path, Clock::time_point start,
                         std::vector<TraceRow>* rows) {
  std::sort(rows->begin(), rows->end(),
            [](const TraceRow& x, const TraceRow& y) { return x.sent < y.sent; });
  std::FILE* f = std::fopen(path.c_str(), "w");
  if (f == nullptr) {
    return Status::IOError("latency trace " + path + ": cannot create: " + std::strerror(errno));
  }
  bool ok = std::fputs("sent_us,latency_us,code\n", f) >= 0;
  for (const TraceRow& r : *rows) {  // bounded: kTraceRowsMax a thread
    if (!ok) break;
    const auto sent_us = std::chrono::duration_cast<std::chrono::microseconds>(r.sent - start);
    ok = std::fprintf(f, "%lld,%u,%c%c\n", static_cast<long long>(sent_us.count()), r.latency_us,
                      r.code[0], r.code[1]) > 0;
  }
  ok = std::fclose(f) == 0 && ok;
  if (!ok) return Status::IOError("latency trace " + path + ": write failed");
  return Status::Ok();
}

void PrintProgress(Clock::time_point start, Clock::time_point end, std::atomic<bool>* done) {
  uint64_t last_answered = 0;
  uint64_t last_approved = 0;
  while (!done->load()) {  // ends with the run
    std::this_thread::sleep_for(std::chrono::seconds(1));
    if (done->load() || Clock::now() > end + std::chrono::seconds(3)) break;
    const uint64_t a = g_answered.load();
    const uint64_t ok = g_approved.load();
    const double t = std::chrono::duration<double>(Clock::now() - start).count();
    std::fprintf(stderr, "\r  %5.1f s  %10llu answered  %8llu/s  approved %8llu/s   ", t,
                 static_cast<unsigned long long>(a),
                 static_cast<unsigned long long>(a - last_answered),
                 static_cast<unsigned long long>(ok - last_approved));
    std::fflush(stderr);
    last_answered = a;
    last_approved = ok;
  }
  std::fprintf(stderr, "\n");
}

// TLS 1.2 or 1.3; the server's chain verified against --ca (else the system's
// CAs; the host name is not checked); --cert/--key for mutual TLS.
Result<ssl::context> MakeTlsContext(const Args& a) {
  if (!a.tls) return Status::InvalidArgument("--ca, --cert and --key need --tls");
  if (a.cert_file.empty() != a.key_file.empty()) {
    return Status::InvalidArgument("--cert and --key go together");
  }
  try {
    ssl::context ctx(ssl::context::tls_client);
    ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                    ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
    if (a.ca_file.empty()) {
      ctx.set_default_verify_paths();
    } else {
      ctx.load_verify_file(a.ca_file);
    }
    ctx.set_verify_mode(ssl::verify_peer);
    if (!a.cert_file.empty()) {
      ctx.use_certificate_chain_file(a.cert_file);
      ctx.use_private_key_file(a.key_file, ssl::context::pem);
    }
    return ctx;
  } catch (const boost::system::system_error& e) {
    return Status::InvalidArgument(std::string("TLS files: ") + e.what());
  }
}

int RunBenchSwitch(const Args& a) {
  if (a.connections == 0 || a.connections > kConnectionsMax || a.depth == 0 ||
      a.depth > kDepthMax || a.duration_s == 0 || a.duration_s > 86400 || a.threads == 0 ||
      a.threads > 64 || a.decline_percent > 100 || a.rate > kRateMax ||
      (a.arrivals != "spread" && a.arrivals != "burst") || a.batch_us > kBatchUsMax ||
      (a.batch_us > 0 && a.rate == 0) ||
      // A link's poll sends at most kPaceBurstMax: more due per poll and the
      // schedule would fall behind for good.
      uint64_t{a.rate} * a.batch_us / 1'000'000 / std::max(a.threads, 1u) >= kPaceBurstMax) {
    std::fprintf(stderr,
                 "narae bench switch: invalid arguments (connections 1..%u, depth 1..%u, "
                 "duration 1..86400, threads 1..64, rate 0..%u, arrivals spread|burst, "
                 "batch-us 0..%u, only with --rate and at most %u requests a thread per "
                 "batch)\n",
                 kConnectionsMax, kDepthMax, kRateMax, kBatchUsMax, kPaceBurstMax - 1);
    return 2;
  }
  Result<Credentials> creds = LoadCredentials(a.credentials);
  if (!creds.ok()) {
    std::fprintf(stderr, "narae bench switch: %s\n", creds.status().ToString().c_str());
    return 2;
  }
  Result<tcp::endpoint> endpoint = Resolve(a.iso);
  if (!endpoint.ok()) {
    std::fprintf(stderr, "narae bench switch: %s\n", endpoint.status().ToString().c_str());
    return 2;
  }
  std::optional<ssl::context> tls;
  if (a.tls || !a.ca_file.empty() || !a.cert_file.empty() || !a.key_file.empty()) {
    Result<ssl::context> ctx = MakeTlsContext(a);
    if (!ctx.ok()) {
      std::fprintf(stderr, "narae bench switch: %s\n", ctx.status().ToString().c_str());
      return 2;
    }
    tls.emplace(std::move(*ctx));
  }
  // Connection i plays terminal i % T and owns SIMs j with j % C == i.
  std::vector<std::unique_ptr<asio::io_context>> iocs;
  std::vector<Results> results(a.threads);
  for (uint32_t t = 0; t < a.threads; ++t) iocs.push_back(std::make_unique<asio::io_context>(1));
  const Clock::time_point start = Clock::now();
  const Clock::time_point end = start + std::chrono::seconds(a.duration_s);
  std::vector<std::unique_ptr<Connection>> connections;
  for (uint32_t i = 0; i < a.connections; ++i) {
    std::vector<int> sims;
    for (size_t j = i; j < creds->sims.size(); j += a.connections)
      sims.push_back(static_cast<int>(j));
    const uint32_t t = i % a.threads;
    connections.push_back(std::make_unique<Connection>(
        *iocs[t], tls ? &*tls : nullptr, a, *creds, *creds->terminals[i % creds->terminals.size()],
        std::move(sims), a.seed * 1000003 + i, results[t], end));
    Connection* c = connections.back().get();
    asio::co_spawn(
        *iocs[t], [c, ep = *endpoint]() { return c->Run(ep); }, asio::detached);
  }
  std::vector<std::unique_ptr<Pacer>> pacers;
  if (a.rate > 0) {  // thread t paces connections t, t + threads, ...
    // Each connection sends every `interval`.
    const auto interval = std::chrono::nanoseconds(
        static_cast<int64_t>(1e9 * a.connections / static_cast<double>(a.rate)));
    for (uint32_t t = 0; t < a.threads && t < a.connections; ++t) {
      std::vector<Connection*> mine;
      for (uint32_t i = t; i < a.connections; i += a.threads) mine.push_back(connections[i].get());
      pacers.push_back(std::make_unique<Pacer>(*iocs[t], std::move(mine), interval,
                                               a.arrivals == "burst",
                                               std::chrono::microseconds(a.batch_us), start, end));
      Pacer* p = pacers.back().get();
      asio::co_spawn(
          *iocs[t], [p]() { return p->Run(); }, asio::detached);
    }
  }
  std::atomic<bool> done{false};
  std::thread progress;
  if (!a.json && isatty(STDERR_FILENO)) progress = std::thread(PrintProgress, start, end, &done);
  std::vector<std::thread> threads;
  for (uint32_t t = 0; t < a.threads; ++t) threads.emplace_back([&, t] { iocs[t]->run(); });
  for (auto& th : threads) th.join();
  const double elapsed = std::chrono::duration<double>(Clock::now() - start).count();
  done = true;
  if (progress.joinable()) progress.join();

  Results all;
  for (Results& r : results) {
    all.sent += r.sent;
    all.answered += r.answered;
    all.approved += r.approved;
    all.skipped += r.skipped;
    all.errors += r.errors;
    all.unanswered += r.unanswered;
    for (const auto& [code, n] : r.codes) all.codes[code] += n;
    for (size_t k = 0; k < kKinds; ++k) {
      all.kinds_sent[k] += r.kinds_sent[k];
      all.kinds_approved[k] += r.kinds_approved[k];
    }
    all.latency_us.insert(all.latency_us.end(), r.latency_us.begin(), r.latency_us.end());
    all.trace.insert(all.trace.end(), std::make_move_iterator(r.trace.begin()),
                     std::make_move_iterator(r.trace.end()));
    std::vector<TraceRow>().swap(r.trace);  // freed as it is merged
  }
  Status trace = Status::Ok();
  if (!a.latency_trace.empty()) {
    trace = WriteLatencyTrace(a.latency_trace, start, &all.trace);
    if (trace.ok() && all.trace.size() < all.answered) {
      trace = Status::FailedPrecondition("latency trace " + a.latency_trace + ": " +
                                         std::to_string(all.answered - all.trace.size()) +
                                         " answers left out (at most 10,000,000 rows a thread)");
    }
  }
  std::sort(all.latency_us.begin(), all.latency_us.end());
  const double duration = static_cast<double>(a.duration_s);
  const double rps = static_cast<double>(all.answered) / duration;
  const double approved_ps = static_cast<double>(all.approved) / duration;
  const auto ms = [&](uint32_t q_basis_points) {
    return static_cast<double>(PercentileOfSorted(all.latency_us, q_basis_points)) / 1e3;
  };
  const double max_ms = all.latency_us.empty() ? 0 : all.latency_us.back() / 1e3;

  if (!a.no_save_counters && !a.echo && !creds->sims.empty()) {  // echoes use no SIM
    Status s = SaveCounters(a.credentials, *creds);
    if (!s.ok()) std::fprintf(stderr, "narae bench switch: %s\n", s.ToString().c_str());
  }
  Json codes = Json::object();
  for (const auto& [code, n] : all.codes) codes[code] = n;
  Json kinds = Json::object();
  for (size_t k = 0; k < kKinds; ++k) {
    kinds[kKindNames[k]] = {{"sent", all.kinds_sent[k]}, {"approved", all.kinds_approved[k]}};
  }
  Json j = {{"bench", "switch"},
            {"connections", a.connections},
            {"duration_s", a.duration_s},
            {"elapsed_s", elapsed},
            {"mode", a.rate > 0 ? "open" : "closed"},
            {"tls", a.tls},
            {"rate", a.rate},
            {"arrivals", a.rate > 0 ? a.arrivals : ""},
            {"batch_us", a.batch_us},
            {"depth", a.depth},
            {"sent", all.sent},
            {"answered", all.answered},
            {"approved", all.approved},
            {"unanswered", all.unanswered},
            {"skipped", all.skipped},
            {"errors", all.errors},
            {"requests_per_s", rps},
            {"approved_per_s", approved_ps},
            {"latency_ms",
             {{"p50", ms(5'000)}, {"p99", ms(9'900)}, {"p999", ms(9'990)}, {"max", max_ms}}},
            {"codes", codes},
            {"kinds", kinds}};
  if (!a.json) {
    std::printf("switch bench: %u connections%s, %u s, %s\n", a.connections,
                a.tls ? " over TLS" : "", a.duration_s,
                a.rate > 0 ? ("open loop at " + std::to_string(a.rate) + " requests/s" +
                              (a.batch_us > 0
                                   ? ", links sending every " + std::to_string(a.batch_us) + " us"
                                   : ""))
                                 .c_str()
                           : ("closed loop, depth " + std::to_string(a.depth)).c_str());
    std::printf("  answered %llu of %llu sent: %.0f requests/s, approved %llu: %.0f/s\n",
                static_cast<unsigned long long>(all.answered),
                static_cast<unsigned long long>(all.sent), rps,
                static_cast<unsigned long long>(all.approved), approved_ps);
    std::printf("  latency ms: p50 %.3f  p99 %.3f  p99.9 %.3f  max %.3f\n", ms(5'000), ms(9'900),
                ms(9'990), max_ms);
    std::printf("  response codes:");
    for (const auto& [code, n] : all.codes) {
      std::printf(" %s=%llu", code.c_str(), static_cast<unsigned long long>(n));
    }
    std::printf("\n  by kind (approved/sent):");
    for (size_t k = 0; k < kKinds; ++k) {
      std::printf(" %s=%llu/%llu", kKindNames[k],
                  static_cast<unsigned long long>(all.kinds_approved[k]),
                  static_cast<unsigned long long>(all.kinds_sent[k]));
    }
    std::printf("\n  unanswered %llu, skipped %llu, errors %llu\n",
                static_cast<unsigned long long>(all.unanswered),
                static_cast<unsigned long long>(all.skipped),
                static_cast<unsigned long long>(all.errors));
  }
  std::printf("%s\n", j.dump().c_str());
  if (!trace.ok()) {
    std::fprintf(stderr, "narae bench switch: %s\n", trace.ToString().c_str());
    return 1;
  }
  return all.errors == 0 && all.answered > 0 ? 0 : 1;
}

}  // namespace

void RegisterSwitchBenchCommands(CLI::App& app) {
  CLI::App* bench = app.get_subcommand("bench");
  static Args args;  // NOLINT: lives for the process
  auto* bs = bench->add_subcommand(
      "switch", "Load generator: plays demo.json terminals, cards and SIMs against narae-switch");
  bs->add_option("--iso", args.iso, "narae-switch ISO 8583 address HOST:PORT");
  static BenchHttpArgs http;  // NOLINT: lives for the process
  bs->add_option("--http", http.http,
                 "narae-switch HTTP API address HOST:PORT (load the storefront API instead)");
  bs->add_option("--credentials", args.credentials, "demo.json (narae demo seed)")->required();
  bs->add_option("--connections", args.connections, "TCP connections (terminals)")
      ->capture_default_str();
  bs->add_option("--duration", args.duration_s, "Seconds to run")->capture_default_str();
  bs->add_option("--rate", args.rate, "Total requests/s, open loop (0 = closed loop)")
      ->capture_default_str();
  bs->add_option("--arrivals", args.arrivals,
                 "Open loop: spread (connections staggered) or burst (all at once)")
      ->capture_default_str();
  bs->add_option("--batch-us", args.batch_us,
                 "Open loop: each connection is an acquirer host's link that writes what its "
                 "terminals produced every N us in one write (0 = each request when due)")
      ->capture_default_str();
  bs->add_option("--depth", args.depth, "Closed loop: requests in flight per connection")
      ->capture_default_str();
  bs->add_option("--threads", args.threads, "Client I/O threads")->capture_default_str();
  bs->add_option("--decline-percent", args.decline_percent,
                 "Percent of new requests sent with a wrong CVV2")
      ->capture_default_str();
  bs->add_flag("--echo", args.echo,
               "Send only network echo tests (0800, code 301; --iso only), answered without "
               "touching the ledger: the latency floor of the network, the I/O threads and this "
               "generator (--decline-percent does not apply)");
  bs->add_option("--seed", args.seed, "Random seed")->capture_default_str();
  bs->add_flag("--no-save-counters", args.no_save_counters,
               "Do not write the SIM counters used back into the credentials file");
  bs->add_flag("--json", args.json, "Print only the JSON line");
  bs->add_option("--latency-trace", args.latency_trace,
                 "Write every answer to this CSV file: send time (us from the start), latency "
                 "(us), response code; sorted by send time");
  bs->add_flag("--tls", args.tls, "Speak TLS to the switch (server.tls set)");
  bs->add_option("--ca", args.ca_file,
                 "With --tls: PEM CA bundle to verify the switch's certificate");
  bs->add_option("--cert", args.cert_file, "With --tls: PEM client certificate chain (mutual TLS)");
  bs->add_option("--key", args.key_file, "With --tls: PEM private key of --cert");
  bs->callback([] {
    if (!http.http.empty()) {  // tools/cmd_bench_http.cpp
      if (args.echo) {
        std::fprintf(stderr, "bench switch: --echo is for --iso (ISO 8583 network messages)\n");
        return SetExitCode(2);
      }
      http.credentials = args.credentials;
      http.connections = args.connections;
      http.duration_s = args.duration_s;
      http.threads = args.threads;
      http.json = args.json;
      return SetExitCode(RunBenchHttp(http));
    }
    if (args.iso.empty()) {
      std::fprintf(stderr, "bench switch: --iso or --http is required\n");
      return SetExitCode(2);
    }
    SetExitCode(RunBenchSwitch(args));
  });
}

}  // namespace narae::tools
