// Bank records of the Narae switch: the bank's configuration, merchants,
// terminals, cards and SIM tokens, stored as ledger aux records (the ledger
// is the source of truth) and cached in memory for the authorization path.
//
// Aux keys (docs/authorization.md lists every record and its encoding):
//   bk/cfg              bank configuration (JSON)
//   bk/m/<merchant id>  merchant (JSON)
//   bk/t/<terminal id>  terminal (JSON)
//   bk/c/<card id>      card (JSON); card id = first 32 hex of SHA-256(PAN)
//   bk/s/<token id>     SIM token (JSON)
//   bk/a/<account hex>  customer account information (JSON)
// The authorizer's own records (au/...) are described in authorizer.hpp.
//
// Customer accounts are ledger accounts (code kCustomerDeposit, flag
// debits_must_not_exceed_credits, a minimum balance). No record holds a PAN,
// a PIN, a CVV or a key in clear: cards keep SHA-256(PAN), the masked PAN and
// the PVV; keys stay in the crypto::KeyStore and records name them by id.
//
// Thread safety: BankCache is internally synchronized (a shared mutex; reads
// return immutable shared_ptrs). The admin functions (IssueCard, SeedDemo,
// ...) write synchronously through the ledger and are meant for tools and
// tests, not for the authorization path.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "ledger/ledger.hpp"
#include "ledger/status.hpp"

namespace narae::crypto {
class KeyStore;
}

namespace narae::switching {

// Limits of the records (named and checked).
inline constexpr size_t kMerchantIdBytesMax = 15;  // field 42
inline constexpr size_t kTerminalIdBytes = 8;      // field 41
inline constexpr size_t kBlockedMccsMax = 64;
inline constexpr size_t kMerchantCurrenciesMax = 8;
inline constexpr size_t kNameBytesMax = 64;
inline constexpr size_t kSeedCustomersMax = 100000;

// Record key prefixes (aux keys).
inline constexpr std::string_view kAuxBankConfig = "bk/cfg";
inline constexpr std::string_view kAuxMerchantPrefix = "bk/m/";
inline constexpr std::string_view kAuxTerminalPrefix = "bk/t/";
inline constexpr std::string_view kAuxCardPrefix = "bk/c/";
inline constexpr std::string_view kAuxSimPrefix = "bk/s/";
inline constexpr std::string_view kAuxAccountPrefix = "bk/a/";

enum class RecordStatus : uint8_t {
  kActive = 1,
  kBlocked = 2,     // card: blocked by staff (62); merchant/terminal: suspended (58)
  kLost = 3,        // card only (41)
  kStolen = 4,      // card only (43)
  kExpired = 5,     // card only (54)
  kPinBlocked = 6,  // card only: too many wrong PINs (75)
  kSuspended = 7,   // SIM token (62)
  kReplaced = 8,    // card replaced by another (62)
};
const char* RecordStatusName(RecordStatus status);
std::optional<RecordStatus> ParseRecordStatus(std::string_view name);

// Per card / SIM risk limits. 0 means "no limit" for every field.
struct RiskLimits {
  uint64_t single_amount_max_minor = 0;  // one transaction (61)
  uint64_t daily_amount_max_minor = 0;   // per UTC day, approved holds + purchases (61)
  uint32_t daily_count_max = 0;          // per UTC day, approved (65)
  uint32_t per_minute_max = 0;           // per UTC minute, approved (65)
  std::vector<uint16_t> blocked_mccs;    // merchant categories refused (57), <= kBlockedMccsMax
  bool operator==(const RiskLimits&) const = default;
};

// The bank's own accounts in one currency.
struct BankAccounts {
  uint16_t currency = 0;
  ledger::AccountId funding;       // kBankCash: the other side of customer deposits
  ledger::AccountId fee_income;    // kFeeIncome
  ledger::AccountId logistics;     // kLogistics: delivery fees of the logistics office
  ledger::AccountId central_bank;  // kCentralBankSettlement
};

struct BankConfig {
  uint32_t version = 1;
  std::string bin;                    // 6..8 digits, the Narae card BIN
  std::string acquirer_id;            // field 32 of our own terminals
  std::string bank_id;                // short name
  std::string token_prefix = "9410";  // first digits of SIM token ids
  std::vector<BankAccounts> accounts;
  uint64_t next_pan_sequence = 1;    // the next card account digits
  uint64_t next_token_sequence = 1;  // the next SIM token digits
  const BankAccounts* ForCurrency(uint16_t currency) const;
};

struct MerchantCurrency {
  uint16_t currency = 0;
  ledger::AccountId clearing;    // captures land here (kMerchantClearing)
  ledger::AccountId settlement;  // what the merchant is paid (kMerchantSettlement)
};

struct Merchant {
  std::string id;  // 1..15 characters (field 42, space-padded on the wire)
  std::string name;
  uint16_t mcc = 0;
  RecordStatus status = RecordStatus::kActive;
  std::vector<MerchantCurrency> currencies;
  uint32_t fee_bps = 0;          // placeholder for settlement: basis points
  uint64_t fee_fixed_minor = 0;  // placeholder for settlement: per transaction
  std::string api_key_id;        // KeyStore id of the HTTP API secret
  const MerchantCurrency* ForCurrency(uint16_t currency) const;
};

struct Terminal {
  std::string id;  // exactly 8 characters (field 41)
  std::string merchant_id;
  RecordStatus status = RecordStatus::kActive;
  std::string tpk_key_id;  // KeyStore id of its PIN key (TDES); empty: no PIN entry
  std::string mac_key_id;  // KeyStore id of its MAC key (AES); empty: no MAC
};

struct Card {
  std::string card_id;   // first 32 hex of SHA-256(PAN): the record key
  std::string pan_hash;  // SHA-256(PAN), 64 lower-case hex
  std::string masked_pan;
  std::string expiry;                // YYMM
  std::string service_code = "201";  // chip card, normal authorization
  std::string psn = "00";            // PAN sequence number (EMV)
  RecordStatus status = RecordStatus::kActive;
  ledger::AccountId account_id;
  uint16_t currency = 0;
  std::string pvv;  // 4 digits; never the PIN
  int pvki = 1;
  RiskLimits limits;
  std::string replaced_by;  // card id of the replacement, if any
};

struct Sim {
  std::string token_id;  // 16 digits (field 2 and field 62)
  std::string iccid;
  std::string msisdn;
  ledger::AccountId account_id;
  uint16_t currency = 0;
  RecordStatus status = RecordStatus::kActive;
  uint32_t key_generation = 1;  // bumped by re-enrolment (a new SIM)
  RiskLimits limits;
};

// Customer account information kept next to the ledger account.
struct CustomerAccount {
  ledger::AccountId id;
  std::string customer;  // name or customer number
  uint16_t currency = 0;
};

// The changing state of a card or SIM (au/d/c/<card id>, au/d/s/<token id>):
// written by the authorizer in the same ledger batch as the hold it counts.
// Binary, version byte first (docs/authorization.md).
struct CredentialState {
  uint32_t day = 0;  // days since 1970-01-01 (UTC) of the daily counters
  uint64_t day_amount_minor = 0;
  uint32_t day_count = 0;
  uint64_t minute = 0;  // minutes since the epoch of minute_count
  uint32_t minute_count = 0;
  uint32_t pin_tries = 0;  // consecutive wrong PINs
  bool has_atc = false;
  uint16_t last_atc = 0;     // chip application transaction counter
  uint64_t sim_counter = 0;  // SIM applet counter high-water mark
  bool operator==(const CredentialState&) const = default;
};
inline constexpr std::string_view kAuxCardStatePrefix = "au/d/c/";
inline constexpr std::string_view kAuxSimStatePrefix = "au/d/s/";
std::string EncodeCredentialState(const CredentialState& s);
// An empty value is the initial state.
Result<CredentialState> DecodeCredentialState(std::string_view bytes);

// ---- Encodings (JSON, versioned with "v"). Decoders never throw. ----
std::string EncodeBankConfig(const BankConfig& c);
Result<BankConfig> DecodeBankConfig(std::string_view text);
std::string EncodeMerchant(const Merchant& m);
Result<Merchant> DecodeMerchant(std::string_view text);
std::string EncodeTerminal(const Terminal& t);
Result<Terminal> DecodeTerminal(std::string_view text);
std::string EncodeCard(const Card& c);
Result<Card> DecodeCard(std::string_view text);
std::string EncodeSim(const Sim& s);
Result<Sim> DecodeSim(std::string_view text);
std::string EncodeCustomerAccount(const CustomerAccount& a);
Result<CustomerAccount> DecodeCustomerAccount(std::string_view text);

// The card id of a PAN and SHA-256(PAN) in hex. Empty on a crypto failure.
std::string PanHashHex(std::string_view pan);
std::string CardIdFromPan(std::string_view pan);

std::string MerchantKey(std::string_view id);
std::string TerminalKey(std::string_view id);
std::string CardKey(std::string_view card_id);
std::string SimKey(std::string_view token_id);
std::string AccountKey(const ledger::AccountId& id);

struct OtherBank;  // settlement.hpp

// ---- The in-memory cache of the records. ----
class BankCache {
 public:
  // Reads every bk/ record of the ledger. Fails on a corrupt record.
  static Result<std::unique_ptr<BankCache>> Load(ledger::Ledger& ledger);

  std::shared_ptr<const BankConfig> config() const;
  std::shared_ptr<const Merchant> FindMerchant(std::string_view id) const;
  std::shared_ptr<const Terminal> FindTerminal(std::string_view id) const;
  std::shared_ptr<const Card> FindCardById(std::string_view card_id) const;
  std::shared_ptr<const Card> FindCardByPan(std::string_view pan) const;
  std::shared_ptr<const Sim> FindSim(std::string_view token_id) const;
  // The other banks (st/b/, settlement.hpp) the authorizer routes to; a
  // snapshot, never null: keep it while using pointers into it.
  std::shared_ptr<const std::vector<OtherBank>> other_banks() const;

  // Cache updates (the caller has written or is writing the record).
  void Update(BankConfig c);
  void Update(Merchant m);
  void Update(Terminal t);
  void Update(Card c);
  void Update(Sim s);
  // Replaces every other bank (`narae bank add` through the admin interface
  // passes ListOtherBanks() after adding one).
  void Update(std::vector<OtherBank> banks);

  size_t card_count() const;

 private:
  // Looked up by string_view without building a key (a card id is 32
  // characters: a std::string of it would be an allocation per request).
  struct KeyHash {
    using is_transparent = void;
    size_t operator()(std::string_view key) const { return std::hash<std::string_view>{}(key); }
  };
  template <typename V>
  using KeyMap = std::unordered_map<std::string, V, KeyHash, std::equal_to<>>;

  mutable std::shared_mutex mu_;
  std::shared_ptr<const BankConfig> config_;                   // GUARDED_BY(mu_)
  KeyMap<std::shared_ptr<const Merchant>> merchants_;          // GUARDED_BY(mu_)
  KeyMap<std::shared_ptr<const Terminal>> terminals_;          // GUARDED_BY(mu_)
  KeyMap<std::shared_ptr<const Card>> cards_;                  // GUARDED_BY(mu_)
  KeyMap<std::shared_ptr<const Sim>> sims_;                    // GUARDED_BY(mu_)
  std::shared_ptr<const std::vector<OtherBank>> other_banks_;  // GUARDED_BY(mu_)
};

// ---- Administration (tools and tests; synchronous ledger writes). ----

// Writes one aux record durably.
Status PutRecord(ledger::Ledger& ledger, std::string_view key, std::string_view value);
Result<BankConfig> LoadBankConfig(ledger::Ledger& ledger);

// The default limits of a new card or SIM in `currency`.
RiskLimits DefaultLimits(uint16_t currency);

struct OpenAccountRequest {
  uint16_t currency = 408;
  uint64_t minimum_balance_minor = 0;
  uint64_t initial_deposit_minor = 0;  // moved from the bank's funding account
  std::string customer;
};
// Creates a customer deposit account (and funds it). REQUIRES a bank config.
Result<ledger::AccountId> OpenCustomerAccount(ledger::Ledger& ledger,
                                              const OpenAccountRequest& request);

struct CreateMerchantRequest {
  std::string id;
  std::string name;
  uint16_t mcc = 0;
  std::vector<uint16_t> currencies;
};
// Creates the merchant, its clearing and settlement accounts per currency
// and its API secret (KeyStore id "api-<id>").
Result<Merchant> CreateMerchant(ledger::Ledger& ledger, crypto::KeyStore& keys,
                                const CreateMerchantRequest& request);

struct AddTerminalResult {
  Terminal terminal;
  std::string tpk_hex;      // printed once for the terminal's key loading
  std::string mac_key_hex;  // empty without a MAC key
};
Result<AddTerminalResult> AddTerminal(ledger::Ledger& ledger, crypto::KeyStore& keys,
                                      std::string_view terminal_id, std::string_view merchant_id,
                                      bool with_mac);

struct IssueCardRequest {
  ledger::AccountId account_id;
  std::string expiry;  // YYMM; empty: 4 years from now
  std::string pin;     // 4..12 digits; empty: random 4 digits
  std::optional<RiskLimits> limits;
  std::string pan;  // empty: the next PAN of the bank's BIN (tests may pass one)
};
struct IssuedCard {
  Card card;
  std::string pan;   // printed once
  std::string cvv2;  // printed once
  std::string pin;   // printed once
};
Result<IssuedCard> IssueCard(ledger::Ledger& ledger, crypto::KeyStore& keys,
                             const IssueCardRequest& request);
// Sets a card's status (block, lost, stolen, unblock = active). Unblocking
// also clears its wrong-PIN counter.
Result<Card> SetCardStatus(ledger::Ledger& ledger, std::string_view card_id, RecordStatus status);
// Finds a card by PAN (16..19 digits) or card id (32 hex).
Result<Card> FindCard(ledger::Ledger& ledger, std::string_view pan_or_card_id);
// Marks the old card replaced and issues a new one on the same account.
Result<IssuedCard> ReplaceCard(ledger::Ledger& ledger, crypto::KeyStore& keys,
                               std::string_view card_id);

struct EnrollSimRequest {
  ledger::AccountId account_id;
  std::string iccid;   // empty: generated
  std::string msisdn;  // empty: generated
  std::optional<RiskLimits> limits;
};
struct EnrolledSim {
  Sim sim;
  std::string sim_key_hex;  // for personalisation, printed once
};
Result<EnrolledSim> EnrollSim(ledger::Ledger& ledger, crypto::KeyStore& keys,
                              const EnrollSimRequest& request);
Result<Sim> SetSimStatus(ledger::Ledger& ledger, std::string_view token_id, RecordStatus status);
// A new SIM (new ICCID) for an existing token: new key, counter reset.
Result<EnrolledSim> ReenrollSim(ledger::Ledger& ledger, crypto::KeyStore& keys,
                                std::string_view token_id, std::string_view new_iccid);
Result<Sim> FindSimRecord(ledger::Ledger& ledger, std::string_view token_id);

// ---- Demo bank (narae demo seed). ----
struct SeedOptions {
  std::string bin = "940801";
  std::string acquirer_id = "940801";
  uint32_t customers = 10;                      // each with a KPW and a USD account, 2 cards, 1 SIM
  uint64_t kpw_deposit_minor = 10'000'000'000;  // KPW 100,000,000.00
  uint64_t usd_deposit_minor = 100'000'000;     // USD 1,000,000.00
  uint64_t kpw_minimum_minor = 100'000;         // KPW 1,000.00
  uint64_t usd_minimum_minor = 1'000;           // USD 10.00
  std::optional<RiskLimits> limits;             // default: DefaultLimits()
};
// `narae demo seed --bench`: per-card limits without daily amount or count
// (single amount as DefaultLimits), deposits of KPW 1,000,000,000,000.00
// and USD 10,000,000,000.00 per customer, so that long load runs are not
// declined for limits (61/65) or funds (51). Never for a real bank.
void ApplyBenchSeedOptions(SeedOptions* options);
struct DemoTerminal {
  std::string id;
  std::string tpk_hex;
  std::string mac_key_hex;
};
struct DemoMerchant {
  Merchant merchant;
  std::vector<DemoTerminal> terminals;
  std::string api_secret_hex;
};
struct DemoCard {
  IssuedCard issued;
  std::string imk_ac_hex;    // demo only: the issuer master key for chip cryptograms
  std::string card_key_hex;  // demo only: the card's own EMV master key
};
struct DemoBank {
  BankConfig config;
  std::vector<DemoMerchant> merchants;
  std::vector<CustomerAccount> accounts;
  std::vector<DemoCard> cards;
  std::vector<EnrolledSim> sims;
};
// Creates the demo bank. Fails (FailedPrecondition) when the ledger already
// holds a bank configuration.
Result<DemoBank> SeedDemo(ledger::Ledger& ledger, crypto::KeyStore& keys,
                          const SeedOptions& options);
// demo.json (schema in docs/authorization.md).
std::string DemoBankJson(const DemoBank& bank, const std::string& ledger_dir,
                         const std::string& keys_dir, const std::string& master_key_path);

// The KeyStore ids Narae uses.
inline constexpr const char* kCvkKeyId = "cvk";
inline constexpr const char* kPvkKeyId = "pvk";
inline constexpr const char* kImkAcKeyId = "imk-ac";
inline constexpr const char* kImkSimKeyId = "imk-sim";
inline constexpr const char* kStatementKeyId = "statement";

// Creates the bank-wide keys when missing (CVK, PVK, IMK-AC, IMK-SIM, statement).
Status EnsureBankKeys(crypto::KeyStore& keys);

}  // namespace narae::switching
