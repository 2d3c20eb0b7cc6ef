// `narae hsm ...` and `narae keys ...`: the crypto module's functions for bank
// staff and test terminals.
//
// The `hsm` commands are calculators: their purpose is to print the value they
// compute (a CVV, a PVV, a PIN block, a code), from keys given on the command
// line, for test cards and terminals. They are not for production keys, which
// stay in the key store and are shown only as KCVs (`narae keys list`).
#include <cstdint>
#include <cstdio>
#include <memory>
#include <string>

#include "crypto/crypto.hpp"
#include "tools/cli.hpp"

namespace narae::tools {
namespace {

namespace nc = narae::crypto;

void Fail(const std::string& message) {
  std::fprintf(stderr, "narae: %s\n", message.c_str());
  SetExitCode(2);
}

void Print(const std::string& line) { std::printf("%s\n", line.c_str()); }

// Parses hex key material; prints a clear error (never the key) on failure.
bool ParseHex(const std::string& flag, const std::string& hex, nc::Bytes* out) {
  Result<nc::Bytes> bytes = nc::FromHex(hex);
  if (!bytes.ok() || bytes->empty()) {
    Fail(flag + " must be an even number of hex digits");
    return false;
  }
  *out = std::move(*bytes);
  return true;
}

bool ParseSecret(const std::string& flag, const std::string& hex, nc::SecretBytes* out) {
  Result<nc::SecretBytes> bytes = nc::SecretFromHex(hex);
  if (!bytes.ok() || bytes->empty()) {
    Fail(flag + " must be an even number of hex digits");
    return false;
  }
  *out = std::move(*bytes);
  return true;
}

template <typename T>
bool Check(const Result<T>& r) {
  if (!r.ok()) Fail(r.status().ToString());
  return r.ok();
}

nc::HashAlg ParseHash(const std::string& s) {
  if (s == "sha256") return nc::HashAlg::kSha256;
  if (s == "sha512") return nc::HashAlg::kSha512;
  return nc::HashAlg::kSha1;
}

void AddCvv(CLI::App& hsm) {
  struct Opts {
    std::string cvk, pan, expiry, service_code;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = hsm.add_subcommand("cvv", "Visa CVV (CVV2: service code 000, iCVV: 999)");
  c->add_option("--cvk", o->cvk, "CVK pair A|B, 32 hex digits")->required();
  c->add_option("--pan", o->pan, "card number")->required();
  c->add_option("--expiry", o->expiry, "expiry YYMM")->required();
  c->add_option("--service-code", o->service_code, "service code NNN")->required();
  c->callback([o] {
    nc::SecretBytes cvk;
    if (!ParseSecret("--cvk", o->cvk, &cvk)) return;
    Result<std::string> cvv = nc::Cvv(cvk, o->pan, o->expiry, o->service_code);
    if (Check(cvv)) Print(*cvv);
  });
}

void AddPvv(CLI::App& hsm) {
  struct Opts {
    std::string pvk, pan, pin;
    int pvki = 1;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = hsm.add_subcommand("pvv", "Visa PIN verification value");
  c->add_option("--pvk", o->pvk, "PVK pair, 32 hex digits")->required();
  c->add_option("--pan", o->pan, "card number")->required();
  c->add_option("--pvki", o->pvki, "PVK index 0..9")->required();
  c->add_option("--pin", o->pin, "PIN (test cards only)")->required();
  c->callback([o] {
    nc::SecretBytes pvk;
    if (!ParseSecret("--pvk", o->pvk, &pvk)) return;
    Result<std::string> pvv = nc::Pvv(pvk, o->pan, o->pvki, o->pin);
    if (Check(pvv)) Print(*pvv);
  });
}

void AddPinBlock(CLI::App& hsm) {
  struct Opts {
    int format = 0;
    std::string pin, pan, key, random;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = hsm.add_subcommand("pin-block", "ISO 9564 PIN block, format 0 or 4");
  c->add_option("--format", o->format, "0 (TDES) or 4 (AES)")->required();
  c->add_option("--pin", o->pin, "PIN, 4..12 digits (test cards only)")->required();
  c->add_option("--pan", o->pan, "card number")->required();
  c->add_option("--key", o->key, "encrypt under this key (TDES for 0, AES for 4)");
  c->add_option("--random", o->random, "format 4 random fill, 16 hex digits (for tests)");
  c->callback([o] {
    if (o->format != 0 && o->format != 4) return Fail("--format must be 0 or 4");
    if (o->key.empty()) {
      if (o->format == 4) return Fail("format 4 is defined enciphered: give --key");
      Result<nc::Bytes> block = nc::EncodePinBlockIso0(o->pin, o->pan);
      if (Check(block)) Print(nc::ToHex(*block));
      return;
    }
    nc::SecretBytes key;
    nc::Bytes random;
    if (!ParseSecret("--key", o->key, &key)) return;
    if (!o->random.empty() && !ParseHex("--random", o->random, &random)) return;
    nc::PinBlockFormat f = o->format == 0 ? nc::PinBlockFormat::kIso0 : nc::PinBlockFormat::kIso4;
    Result<nc::Bytes> block = nc::EncryptPinBlock(f, key, o->pin, o->pan, random);
    if (Check(block)) Print(nc::ToHex(*block));
  });
}

void AddOtp(CLI::App& hsm) {
  struct Opts {
    std::string key, hash = "sha1";
    uint64_t counter = 0;
    int64_t time = 0;
    int digits = 6;
  };
  auto h = std::make_shared<Opts>();
  CLI::App* hotp = hsm.add_subcommand("hotp", "HOTP code (RFC 4226)");
  hotp->add_option("--key", h->key, "secret, hex")->required();
  hotp->add_option("--counter", h->counter, "counter")->required();
  hotp->add_option("--digits", h->digits, "digits, 6..10")->capture_default_str();
  hotp->callback([h] {
    nc::SecretBytes key;
    if (!ParseSecret("--key", h->key, &key)) return;
    Result<std::string> code = nc::Hotp(key, h->counter, h->digits);
    if (Check(code)) Print(*code);
  });
  auto t = std::make_shared<Opts>();
  CLI::App* totp = hsm.add_subcommand("totp", "TOTP code (RFC 6238), 30 s steps");
  totp->add_option("--key", t->key, "secret, hex")->required();
  totp->add_option("--time", t->time, "unix time, seconds")->required();
  totp->add_option("--digits", t->digits, "digits, 6..10")->capture_default_str();
  totp->add_option("--hash", t->hash, "sha1, sha256 or sha512")
      ->check(CLI::IsMember({"sha1", "sha256", "sha512"}))
      ->capture_default_str();
  totp->callback([t] {
    nc::SecretBytes key;
    if (!ParseSecret("--key", t->key, &key)) return;
    Result<std::string> code = nc::Totp(key, t->time, t->digits, ParseHash(t->hash));
    if (Check(code)) Print(*code);
  });
}

void AddCmacAndKcv(CLI::App& hsm) {
  struct Opts {
    std::string key, data;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* cmac = hsm.add_subcommand("cmac", "AES-CMAC (RFC 4493)");
  cmac->add_option("--key", o->key, "AES key, 32/48/64 hex digits")->required();
  cmac->add_option("--data", o->data, "message, hex (may be empty)")->required();
  cmac->callback([o] {
    nc::SecretBytes key;
    if (!ParseSecret("--key", o->key, &key)) return;
    Result<nc::Bytes> data = nc::FromHex(o->data);
    if (!data.ok()) return Fail("--data must be hex");
    Result<nc::Bytes> mac = nc::AesCmac(key, *data);
    if (Check(mac)) Print(nc::ToHex(*mac));
  });
  auto k = std::make_shared<Opts>();
  CLI::App* kcv = hsm.add_subcommand("kcv", "key check value (TDES and/or AES)");
  kcv->add_option("--key", k->key, "key, hex")->required();
  kcv->callback([k] {
    nc::SecretBytes key;
    if (!ParseSecret("--key", k->key, &key)) return;
    Result<std::string> tdes = nc::KcvTdes(key);
    Result<std::string> aes = nc::KcvAes(key);
    if (!tdes.ok() && !aes.ok()) return Fail("key must be 8, 16, 24 or 32 bytes");
    if (tdes.ok()) Print("TDES " + *tdes);
    if (aes.ok()) Print("AES " + *aes);
  });
}

void AddArqc(CLI::App& hsm) {
  struct Opts {
    std::string imk, pan, psn = "00", data, arc;
    uint32_t atc = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c = hsm.add_subcommand(
      "arqc", "EMV ARQC: card key option A, session key from the ATC, MAC algorithm 3");
  c->add_option("--imk", o->imk, "IMK-AC, 32 hex digits")->required();
  c->add_option("--pan", o->pan, "card number")->required();
  c->add_option("--psn", o->psn, "PAN sequence number, 2 digits")->capture_default_str();
  c->add_option("--atc", o->atc, "application transaction counter")
      ->check(CLI::Range(0, 65535))
      ->required();
  c->add_option("--data", o->data, "CDOL1 transaction data, hex")->required();
  c->add_option("--arc", o->arc, "also print ARPC method 1 for this 4-hex-digit ARC");
  c->callback([o] {
    nc::SecretBytes imk;
    nc::Bytes data;
    if (!ParseSecret("--imk", o->imk, &imk) || !ParseHex("--data", o->data, &data)) return;
    Result<nc::SecretBytes> card = nc::EmvCardKeyOptionA(imk, o->pan, o->psn);
    if (!Check(card)) return;
    Result<nc::SecretBytes> sk = nc::EmvSessionKey(*card, static_cast<uint16_t>(o->atc));
    if (!Check(sk)) return;
    Result<nc::Bytes> arqc = nc::EmvArqc(*sk, data);
    if (!Check(arqc)) return;
    Print("ARQC " + nc::ToHex(*arqc));
    if (o->arc.empty()) return;
    nc::Bytes arc;
    if (!ParseHex("--arc", o->arc, &arc)) return;
    Result<nc::Bytes> arpc = nc::EmvArpcMethod1(*card, *arqc, arc);
    if (Check(arpc)) Print("ARPC " + nc::ToHex(*arpc));
  });
}

void AddSimCryptogram(CLI::App& hsm) {
  struct Opts {
    std::string imk_sim, iccid, token, merchant;
    uint64_t counter = 0, amount = 0;
    uint32_t currency = 408;
    int64_t time = 0;
  };
  auto o = std::make_shared<Opts>();
  CLI::App* c =
      hsm.add_subcommand("sim-cryptogram", "the payment cryptogram a SIM applet would send");
  c->add_option("--imk-sim", o->imk_sim, "IMK-SIM, AES key, hex")->required();
  c->add_option("--iccid", o->iccid, "SIM serial number (19-20 digits)")->required();
  c->add_option("--token", o->token, "token id")->required();
  c->add_option("--counter", o->counter, "SIM counter")->required();
  c->add_option("--amount", o->amount, "amount in minor units")->required();
  c->add_option("--currency", o->currency, "ISO 4217 numeric")
      ->check(CLI::Range(1, 999))
      ->capture_default_str();
  c->add_option("--merchant", o->merchant, "merchant id")->required();
  c->add_option("--time", o->time, "unix time, seconds")->required();
  c->callback([o] {
    nc::SecretBytes imk;
    if (!ParseSecret("--imk-sim", o->imk_sim, &imk)) return;
    Result<nc::SecretBytes> sim_key = nc::DeriveSimKey(imk, o->iccid);
    if (!Check(sim_key)) return;
    nc::SimPaymentFields f;
    f.token_id = o->token;
    f.counter = o->counter;
    f.amount_minor = o->amount;
    f.currency = static_cast<uint16_t>(o->currency);
    f.merchant_id = o->merchant;
    f.unix_time_s = o->time;
    Result<nc::Bytes> c = nc::SimCryptogram(*sim_key, f);
    if (Check(c)) Print(nc::ToHex(*c));
  });
}

void AddKeys(CLI::App& app) {
  CLI::App* keys = app.add_subcommand("keys", "master key and key store (KCVs only)");
  keys->require_subcommand(1);
  auto out = std::make_shared<std::string>();
  CLI::App* init = keys->add_subcommand("init", "create a new master key file (mode 0600)");
  init->add_option("--out", *out, "path of the new file (must not exist)")->required();
  init->callback([out] {
    Result<std::string> kcv = nc::CreateMasterKeyFile(*out);
    if (Check(kcv)) Print("created " + *out + " (AES-256, KCV " + *kcv + ")");
  });
  struct ListOpts {
    std::string data, master_key;
  };
  auto l = std::make_shared<ListOpts>();
  CLI::App* list = keys->add_subcommand("list", "list the key store: id, type, version, KCV");
  list->add_option("--data", l->data, "data folder holding keys.txt")->required();
  list->add_option("--master-key", l->master_key,
                   "master key file (default: $NARAE_MASTER_KEY, hex)");
  list->callback([l] {
    Result<nc::SecretBytes> mk =
        l->master_key.empty() ? nc::LoadMasterKeyFromEnv() : nc::LoadMasterKeyFile(l->master_key);
    if (!Check(mk)) return;
    Result<std::unique_ptr<nc::KeyStore>> store = nc::KeyStore::Open(l->data, *mk);
    if (!Check(store)) return;
    Print("id\ttype\tversion\tstatus\tkcv");
    for (const nc::KeyInfo& k : (*store)->List()) {
      const char* status = k.status == nc::KeyStatus::kActive       ? "active"
                           : k.status == nc::KeyStatus::kVerifyOnly ? "verify-only"
                                                                    : "retired";
      Print(k.id + "\t" + nc::KeyTypeName(k.type) + "\t" + std::to_string(k.version) + "\t" +
            status + "\t" + k.kcv);
    }
  });
}

}  // namespace

void RegisterHsmCommands(CLI::App& app) {
  CLI::App* hsm = app.add_subcommand(
      "hsm", "HSM calculator for test cards and terminals (prints computed values)");
  hsm->require_subcommand(1);
  AddCvv(*hsm);
  AddPvv(*hsm);
  AddPinBlock(*hsm);
  AddOtp(*hsm);
  AddCmacAndKcv(*hsm);
  AddArqc(*hsm);
  AddSimCryptogram(*hsm);
  AddKeys(app);
}

}  // namespace narae::tools
