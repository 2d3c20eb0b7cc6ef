// `narae bench crypto`: the cost of each credential check the switch makes
// per authorization (CVV2, PIN under a terminal's TPK, the ISO 8583 MAC, the
// EMV ARQC chain, the SIM cryptogram with its per-SIM key), single-threaded,
// through the public crypto API exactly as switch/authorizer.cpp calls it.
//
// Inputs are made before timing: `--cards` cards (PAN, CVV2, PIN block, ATC),
// `--terminals` terminals (TPK, MAC key), `--sims` SIMs, used round-robin,
// so the keys in use vary as they do under load. Every verification must
// succeed (exit 1 otherwise). Prints ns/op per check and a JSON line.
// Instruction counts: run under `valgrind --tool=callgrind` with `--op` and
// two iteration counts; the difference divided by the extra iterations is
// the cost of one check without the set-up (docs/crypto.md).
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "crypto/crypto.hpp"
#include "tools/cli.hpp"

namespace narae::tools {
namespace {

namespace nc = narae::crypto;

constexpr uint64_t kIterationsMax = 100'000'000;
constexpr uint32_t kInputsMax = 100'000;
constexpr const char* kOps[] = {"cvv2_verify", "pin_verify", "mac_verify", "arqc_verify",
                                "sim_verify"};

struct Args {
  uint64_t iterations = 20'000;
  uint32_t cards = 64;
  uint32_t terminals = 8;
  uint32_t sims = 64;
  std::string op;  // empty: all
  bool json = false;
};

struct Card {
  std::string pan;
  std::string expiry = "2912";
  std::string cvv2;
  int pvki = 1;
  std::string pvv;
  std::vector<nc::Bytes> pin_blocks;  // one per terminal (under its TPK)
  uint16_t atc = 0;
  nc::Bytes transaction_data;
  nc::Bytes arqc;
};

struct Sim {
  std::string iccid;
  nc::SimPaymentFields fields;
  nc::Bytes cryptogram;
};

struct Inputs {
  nc::SecretBytes cvk;
  nc::SecretBytes pvk;
  nc::SecretBytes imk_ac;
  nc::SecretBytes imk_sim;
  std::vector<nc::SecretBytes> tpks;
  std::vector<nc::SecretBytes> mac_keys;
  std::vector<nc::Bytes> messages;  // one MAC'd message per terminal
  std::vector<nc::Bytes> macs;
  std::vector<Card> cards;
  std::vector<Sim> sims;
  int64_t now_s = 1'800'000'000;
};

template <typename T>
bool Take(Result<T> r, T* out, const char* what) {
  if (!r.ok()) {
    std::fprintf(stderr, "bench crypto: %s: %s\n", what, r.status().ToString().c_str());
    return false;
  }
  *out = std::move(*r);
  return true;
}

// An ICCID of 19 digits: 18 and a Luhn check digit.
std::string Iccid(uint32_t i) {
  std::string body = "89501" + std::to_string(1'000'000'000'000ULL + i);
  Result<char> check = nc::LuhnCheckDigit(body);
  return check.ok() ? body + *check : body;
}

bool MakeTerminals(const Args& a, Inputs* in) {
  for (uint32_t t = 0; t < a.terminals; ++t) {
    nc::SecretBytes tpk;
    nc::SecretBytes mac_key;
    nc::Bytes message;
    nc::Bytes mac;
    if (!Take(nc::RandomKey(16), &tpk, "TPK") || !Take(nc::RandomKey(16), &mac_key, "MAC key") ||
        !Take(nc::RandomBytes(180), &message, "message") ||
        !Take(nc::Iso8583Mac(mac_key, message), &mac, "MAC")) {
      return false;
    }
    in->tpks.push_back(std::move(tpk));
    in->mac_keys.push_back(std::move(mac_key));
    in->messages.push_back(std::move(message));
    in->macs.push_back(std::move(mac));
  }
  return true;
}

bool MakeCard(uint32_t i, Inputs* in) {
  Card c;
  if (!Take(nc::BuildPan("950001", std::to_string(100'000'000ULL + i)), &c.pan, "PAN") ||
      !Take(nc::Cvv2(in->cvk, c.pan, c.expiry), &c.cvv2, "CVV2")) {
    return false;
  }
  const std::string pin = std::to_string(1000 + i % 9000);
  if (!Take(nc::Pvv(in->pvk, c.pan, c.pvki, pin), &c.pvv, "PVV")) return false;
  for (const nc::SecretBytes& tpk : in->tpks) {
    nc::Bytes block;
    if (!Take(nc::EncryptPinBlock(nc::PinBlockFormat::kIso0, tpk, pin, c.pan), &block, "PIN")) {
      return false;
    }
    c.pin_blocks.push_back(std::move(block));
  }
  // A CDOL1-like block: amount, other amount, country, TVR, currency, date,
  // type, unpredictable number, AIP, ATC (37 bytes) and an IAD (7 bytes).
  c.atc = static_cast<uint16_t>(1 + i % 60'000);
  if (!Take(nc::RandomBytes(44), &c.transaction_data, "CDOL1")) return false;
  nc::SecretBytes card_key;
  nc::SecretBytes session;
  if (!Take(nc::EmvCardKeyOptionA(in->imk_ac, c.pan, "01"), &card_key, "card key") ||
      !Take(nc::EmvSessionKey(card_key, c.atc), &session, "session key") ||
      !Take(nc::EmvArqc(session, c.transaction_data), &c.arqc, "ARQC")) {
    return false;
  }
  in->cards.push_back(std::move(c));
  return true;
}

bool MakeSim(uint32_t i, Inputs* in) {
  Sim s;
  s.iccid = Iccid(i);
  s.fields.token_id = "SIMTOKEN" + std::to_string(i);
  s.fields.counter = 7;
  s.fields.amount_minor = 12'345;
  s.fields.currency = 408;
  s.fields.merchant_id = "NOODLE01";
  s.fields.unix_time_s = in->now_s;
  nc::SecretBytes key;
  if (!Take(nc::DeriveSimKey(in->imk_sim, s.iccid), &key, "SIM key") ||
      !Take(nc::SimCryptogram(key, s.fields), &s.cryptogram, "SIM cryptogram")) {
    return false;
  }
  in->sims.push_back(std::move(s));
  return true;
}

bool MakeInputs(const Args& a, Inputs* in) {
  if (!Take(nc::RandomKey(16), &in->cvk, "CVK") || !Take(nc::RandomKey(16), &in->pvk, "PVK") ||
      !Take(nc::RandomKey(16), &in->imk_ac, "IMK-AC") ||
      !Take(nc::RandomKey(16), &in->imk_sim, "IMK-SIM") || !MakeTerminals(a, in)) {
    return false;
  }
  for (uint32_t i = 0; i < a.cards; ++i) {
    if (!MakeCard(i, in)) return false;
  }
  for (uint32_t i = 0; i < a.sims; ++i) {
    if (!MakeSim(i, in)) return false;
  }
  return true;
}

// One check, as the switch makes it; i picks the card/terminal/SIM.
bool RunOne(const std::string& op, const Inputs& in, uint64_t i) {
  const Card& c = in.cards[i % in.cards.size()];
  const size_t t = (i / in.cards.size() + i) % in.tpks.size();
  if (op == "cvv2_verify") return nc::VerifyCvv(in.cvk, c.pan, c.expiry, "000", c.cvv2).ok();
  if (op == "pin_verify") {
    return nc::VerifyPinPvv(in.tpks[t], nc::PinBlockFormat::kIso0, c.pin_blocks[t], c.pan, in.pvk,
                            c.pvki, c.pvv)
        .ok();
  }
  if (op == "mac_verify")
    return nc::VerifyIso8583Mac(in.mac_keys[t], in.messages[t], in.macs[t]).ok();
  if (op == "arqc_verify") {
    return nc::EmvVerifyArqc(in.imk_ac, c.pan, "01", c.atc, c.transaction_data, c.arqc).ok();
  }
  const Sim& s = in.sims[i % in.sims.size()];
  Result<nc::SecretBytes> key = nc::DeriveSimKey(in.imk_sim, s.iccid);
  if (!key.ok()) return false;
  nc::SimVerifyOptions vo;
  vo.counter_window = 1;
  nc::SimVerification v =
      nc::VerifySimPayment(*key, s.fields.counter - 1, in.now_s, vo, s.fields, s.cryptogram);
  return v.check == nc::SimCheck::kAccepted;
}

int RunBenchCrypto(const Args& a) {
  if (a.iterations == 0 || a.iterations > kIterationsMax || a.cards == 0 || a.cards > kInputsMax ||
      a.terminals == 0 || a.terminals > 1000 || a.sims == 0 || a.sims > kInputsMax) {
    std::fprintf(stderr,
                 "bench crypto: --iterations 1..1e8, --cards and --sims 1..100000, "
                 "--terminals 1..1000\n");
    return 2;
  }
  std::vector<std::string> ops;
  for (const char* op : kOps) {
    if (a.op.empty() || a.op == op) ops.emplace_back(op);
  }
  if (ops.empty()) {
    std::fprintf(stderr, "bench crypto: unknown --op %s\n", a.op.c_str());
    return 2;
  }
  Inputs in;
  if (!MakeInputs(a, &in)) return 2;
  nlohmann::json per_op = nlohmann::json::object();
  uint64_t failures = 0;
  for (const std::string& op : ops) {
    auto start = std::chrono::steady_clock::now();
    for (uint64_t i = 0; i < a.iterations; ++i) {
      if (!RunOne(op, in, i)) ++failures;
    }
    auto elapsed = std::chrono::steady_clock::now() - start;
    const double ns =
        static_cast<double>(std::chrono::duration_cast<std::chrono::nanoseconds>(elapsed).count()) /
        static_cast<double>(a.iterations);
    per_op[op] = static_cast<uint64_t>(ns + 0.5);
    if (!a.json) std::printf("%-12s %10.0f ns/op\n", op.c_str(), ns);
  }
  nlohmann::json j = {{"bench", "crypto"},   {"iterations", a.iterations},
                      {"cards", a.cards},    {"terminals", a.terminals},
                      {"sims", a.sims},      {"ns_per_op", per_op},
                      {"failures", failures}};
  std::printf("%s\n", j.dump().c_str());
  if (failures != 0)
    std::fprintf(stderr, "bench crypto: %llu checks failed\n",
                 static_cast<unsigned long long>(failures));
  return failures == 0 ? 0 : 1;
}

}  // namespace

void RegisterCryptoBenchCommands(CLI::App& app) {
  CLI::App* bench = app.get_subcommand("bench");
  static Args args;  // NOLINT: lives for the process
  auto* bc = bench->add_subcommand(
      "crypto", "Cost of each credential check per authorization (CVV2, PIN, MAC, ARQC, SIM)");
  bc->add_option("--iterations", args.iterations, "Checks per operation")->capture_default_str();
  bc->add_option("--cards", args.cards, "Distinct cards used round-robin")->capture_default_str();
  bc->add_option("--terminals", args.terminals, "Distinct terminals (TPK, MAC key)")
      ->capture_default_str();
  bc->add_option("--sims", args.sims, "Distinct SIMs")->capture_default_str();
  bc->add_option("--op", args.op,
                 "Only this check: cvv2_verify, pin_verify, mac_verify, arqc_verify, sim_verify");
  bc->add_flag("--json", args.json, "Print only the JSON line");
  bc->callback([] { SetExitCode(RunBenchCrypto(args)); });
}

}  // namespace narae::tools
