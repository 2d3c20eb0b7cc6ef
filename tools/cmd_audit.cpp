// `narae trial-balance`, `narae statement` (+ verify, keygen), `narae backup`
// and `narae restore`: the auditor's and bank staff's commands. The work is
// in tools/statement.cpp; this file parses arguments, opens the ledger (a
// read-only follower for every read, so a running switch is never stopped),
// prints tables for people or JSON for programs, and sets the exit code:
// 0 success, 1 a failed check (unbalanced, bad signature, copy that does not
// verify), 2 usage, input or I/O error. See docs/tools.md.
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "ledger/ledger.hpp"
#include "tools/admin_client.hpp"
#include "tools/cli.hpp"
#include "tools/progress.hpp"
#include "tools/statement.hpp"

namespace narae::tools {
namespace {

namespace fs = std::filesystem;
using ledger::Ledger;

constexpr int kExitOk = 0;
constexpr int kExitCheckFailed = 1;
constexpr int kExitError = 2;

// Prints the failure for people (stderr) and, with --json, for programs.
int Fail(const char* command, bool json, int code, const std::string& message) {
  std::fprintf(stderr, "narae %s: %s\n", command, message.c_str());
  if (json) {
    std::printf("%s\n", nlohmann::json({{"ok", false}, {"error", message}}).dump().c_str());
  }
  return code;
}
int Fail(const char* command, bool json, const Status& st) {
  return Fail(command, json, kExitError, st.message().empty() ? st.ToString() : st.message());
}

bool IsLedgerDir(const std::string& dir) {
  std::error_code ec;
  return fs::is_regular_file(fs::path(dir) / "CURRENT", ec);
}

// A read-only follower of the ledger in `dir` (works while a switch runs).
Result<std::unique_ptr<Ledger>> OpenFollower(const std::string& dir) {
  if (!IsLedgerDir(dir)) return Status::NotFound("no ledger at " + dir);
  ledger::Options o;
  o.path = dir;
  o.read_only = true;
  return Ledger::Open(o);
}

bool LooksLocked(const Status& st) {
  const std::string& m = st.message();
  return m.find("lock") != std::string::npos || m.find("LOCK") != std::string::npos;
}

std::string Money(UInt128 v, const std::optional<Currency>& c) {
  return FormatMinor(v, c ? c->exponent : 0);
}
std::string CurrencyLabel(uint32_t ledger) {
  auto c = FindCurrency(ledger);
  return c ? std::string(c->alpha) : std::to_string(ledger);
}

// ---- trial-balance ------------------------------------------------------------------

struct TrialBalanceArgs {
  std::string data;
  std::string at;
  bool json = false;
};

nlohmann::ordered_json Figures(uint32_t ledger, const UInt128& dp, const UInt128& dpo,
                               const UInt128& cp, const UInt128& cpo) {
  const auto c = FindCurrency(ledger);
  return {{"debits_pending_minor", UInt128ToString(dp)},
          {"debits_posted_minor", UInt128ToString(dpo)},
          {"credits_pending_minor", UInt128ToString(cp)},
          {"credits_posted_minor", UInt128ToString(cpo)},
          {"debits_pending", Money(dp, c)},
          {"debits_posted", Money(dpo, c)},
          {"credits_pending", Money(cp, c)},
          {"credits_posted", Money(cpo, c)}};
}

void PrintTrialBalanceJson(const TrialBalance& tb) {
  nlohmann::ordered_json j;
  j["ok"] = true;
  j["balanced"] = tb.balanced();
  j["at"] = tb.at_ns ? nlohmann::ordered_json(FormatDateTime(*tb.at_ns)) : nlohmann::ordered_json();
  j["at_ns"] = tb.at_ns ? nlohmann::ordered_json(*tb.at_ns) : nlohmann::ordered_json();
  j["transfers_replayed"] = tb.transfers_replayed;
  j["rows"] = nlohmann::ordered_json::array();
  for (const TrialBalanceRow& r : tb.rows) {
    nlohmann::ordered_json row = {{"ledger", r.ledger},
                                  {"currency", CurrencyLabel(r.ledger)},
                                  {"code", r.code},
                                  {"type", AccountCodeName(r.code)},
                                  {"accounts", r.accounts}};
    row.update(
        Figures(r.ledger, r.debits_pending, r.debits_posted, r.credits_pending, r.credits_posted));
    j["rows"].push_back(row);
  }
  j["totals"] = nlohmann::ordered_json::array();
  for (const TrialBalanceTotal& t : tb.totals) {
    nlohmann::ordered_json row = {
        {"ledger", t.ledger}, {"currency", CurrencyLabel(t.ledger)}, {"accounts", t.accounts}};
    row.update(
        Figures(t.ledger, t.debits_pending, t.debits_posted, t.credits_pending, t.credits_posted));
    row["pending_balanced"] = t.debits_pending == t.credits_pending;
    row["posted_balanced"] = t.debits_posted == t.credits_posted;
    row["balanced"] = t.balanced();
    j["totals"].push_back(row);
  }
  std::printf("%s\n", j.dump().c_str());
}

void PrintTrialBalanceTable(const TrialBalance& tb) {
  std::printf("Trial balance %s\n",
              tb.at_ns ? ("at " + FormatDateTime(*tb.at_ns)).c_str() : "(live balances)");
  const char* fmt = "%-4s %-26s %9s %22s %22s %22s %22s\n";
  std::printf(fmt, "ccy", "type", "accounts", "debits posted", "credits posted", "debits pending",
              "credits pending");
  for (const TrialBalanceTotal& t : tb.totals) {
    const auto c = FindCurrency(t.ledger);
    const std::string ccy = CurrencyLabel(t.ledger);
    for (const TrialBalanceRow& r : tb.rows) {
      if (r.ledger != t.ledger) continue;
      const std::string type = std::to_string(r.code) + " " + AccountCodeName(r.code);
      std::printf(fmt, ccy.c_str(), type.c_str(), std::to_string(r.accounts).c_str(),
                  Money(r.debits_posted, c).c_str(), Money(r.credits_posted, c).c_str(),
                  Money(r.debits_pending, c).c_str(), Money(r.credits_pending, c).c_str());
    }
    std::printf(fmt, ccy.c_str(), "TOTAL", std::to_string(t.accounts).c_str(),
                Money(t.debits_posted, c).c_str(), Money(t.credits_posted, c).c_str(),
                Money(t.debits_pending, c).c_str(), Money(t.credits_pending, c).c_str());
    std::printf("%-4s check: posted %s, pending %s\n\n", ccy.c_str(),
                t.debits_posted == t.credits_posted ? "balanced" : "NOT BALANCED",
                t.debits_pending == t.credits_pending ? "balanced" : "NOT BALANCED");
  }
  std::printf("trial balance: %s\n", tb.balanced() ? "OK, debits equal credits in every currency"
                                                   : "FAILED: debits differ from credits");
}

int RunTrialBalance(const TrialBalanceArgs& a) {
  const char* cmd = "trial-balance";
  std::optional<uint64_t> at;
  if (!a.at.empty()) {
    auto t = ParseInstant(a.at);
    if (!t.ok()) return Fail(cmd, a.json, t.status());
    at = *t;
  }
  auto opened = OpenFollower(a.data);
  if (!opened.ok()) return Fail(cmd, a.json, opened.status());
  Progress progress("replaying transfers", 1000, a.json || !at);
  auto tb =
      ComputeTrialBalance(**opened, at, [&](uint64_t permille) { progress.Update(permille); });
  progress.Finish();
  if (!tb.ok()) return Fail(cmd, a.json, tb.status());
  if (a.json) {
    PrintTrialBalanceJson(*tb);
  } else {
    PrintTrialBalanceTable(*tb);
  }
  return tb->balanced() ? kExitOk : kExitCheckFailed;
}

// ---- statement ----------------------------------------------------------------------

// The key store in `keys_dir`, unlocked with the master key file (or
// NARAE_MASTER_KEY when no file is given).
Result<std::unique_ptr<crypto::KeyStore>> OpenKeyStore(const std::string& keys_dir,
                                                       const std::string& master_key) {
  auto mk =
      master_key.empty() ? crypto::LoadMasterKeyFromEnv() : crypto::LoadMasterKeyFile(master_key);
  if (!mk.ok()) return mk.status();
  return crypto::KeyStore::Open(keys_dir, std::move(mk).value());
}

struct StatementArgs {
  std::string data, account, from, to, format, out, key_file;
  std::string keys, key_id, master_key;  // key store signing
  bool sign = false;
  bool json = false;
};

Result<ledger::AccountId> ParseAccountId(std::string text) {
  if (text.starts_with("0x") || text.starts_with("0X")) text = text.substr(2);
  auto v = ledger::U128::Parse(text, true);
  if (!v || v->IsZero() || v->IsMax()) {
    return Status::InvalidArgument("bad account id '" + text +
                                   "': 1..32 hex digits or a decimal number, not 0");
  }
  return ledger::AccountId{*v};
}

Status WriteStatementFile(const Statement& s, StatementFormat format, const std::string& out) {
  if (out == "-") return WriteStatement(s, format, std::cout);
  const std::string tmp = out + ".tmp";
  {
    std::ofstream f(tmp, std::ios::binary | std::ios::trunc);
    if (!f) return Status::IOError("cannot create " + tmp);
    Status st = WriteStatement(s, format, f);
    f.close();
    if (st.ok() && !f) st = Status::IOError("cannot write " + tmp);
    if (!st.ok()) {
      std::error_code ec;
      fs::remove(tmp, ec);
      return st;
    }
  }
  std::error_code ec;
  fs::rename(tmp, out, ec);
  if (ec) return Status::IOError("cannot rename " + tmp + " to " + out + ": " + ec.message());
  return Status::Ok();
}

int RunStatement(const StatementArgs& a) {
  const char* cmd = "statement";
  for (const auto& [value, name] : {std::pair{&a.data, "--data"},
                                    {&a.account, "--account"},
                                    {&a.from, "--from"},
                                    {&a.to, "--to"},
                                    {&a.format, "--format"},
                                    {&a.out, "--out"}}) {
    if (value->empty()) return Fail(cmd, a.json, kExitError, std::string(name) + " is required");
  }
  auto format = ParseStatementFormat(a.format);
  if (!format.ok()) return Fail(cmd, a.json, format.status());
  auto account = ParseAccountId(a.account);
  if (!account.ok()) return Fail(cmd, a.json, account.status());
  auto from = ParseDateBound(a.from, false);
  if (!from.ok()) return Fail(cmd, a.json, from.status());
  auto to = ParseDateBound(a.to, true);
  if (!to.ok()) return Fail(cmd, a.json, to.status());
  if (*from > *to) {
    return Fail(cmd, a.json, kExitError, "--from " + a.from + " is after --to " + a.to);
  }
  const bool use_store = !a.key_id.empty();
  if (a.sign && a.key_file.empty() == !use_store) {
    return Fail(cmd, a.json, kExitError,
                "--sign needs --key-file, or --key-id with --keys (and --master-key)");
  }
  if (use_store && a.keys.empty()) return Fail(cmd, a.json, kExitError, "--key-id needs --keys");
  if (a.sign && a.out == "-") return Fail(cmd, a.json, kExitError, "--sign needs a file for --out");
  std::optional<crypto::SecretBytes> key;
  std::unique_ptr<crypto::KeyStore> store;
  if (a.sign && use_store) {  // before any work: a bad key fails fast
    auto opened_store = OpenKeyStore(a.keys, a.master_key);
    if (!opened_store.ok()) return Fail(cmd, a.json, opened_store.status());
    store = std::move(opened_store).value();
    auto usable = store->Use(a.key_id, crypto::KeyType::kStatementSigning);
    if (!usable.ok()) return Fail(cmd, a.json, usable.status());
  } else if (a.sign) {
    auto k = LoadSigningKey(a.key_file);
    if (!k.ok()) return Fail(cmd, a.json, k.status());
    key = std::move(k).value();
  }
  auto opened = OpenFollower(a.data);
  if (!opened.ok()) return Fail(cmd, a.json, opened.status());
  StatementRequest req;
  req.account = *account;
  req.from_ns = *from;
  req.to_ns = *to;
  req.created_ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                             std::chrono::system_clock::now().time_since_epoch())
                                             .count());
  Progress progress("entries read", 0, a.json || a.out == "-");
  auto s = BuildStatement(**opened, req, [&](uint64_t n) { progress.Update(n); });
  progress.Finish();
  if (!s.ok()) return Fail(cmd, a.json, s.status());
  Status written = WriteStatementFile(*s, *format, a.out);
  if (!written.ok()) return Fail(cmd, a.json, written);
  std::string sig_path;
  if (a.sign) {
    sig_path = a.out + ".sig";
    Status signed_ok = store ? SignFileWithKeyStore(a.out, *store, a.key_id, sig_path)
                             : SignFile(a.out, *key, sig_path);
    if (!signed_ok.ok()) return Fail(cmd, a.json, signed_ok);
  }
  const uint8_t ex = s->currency.exponent;
  if (a.json) {
    nlohmann::ordered_json j = {{"ok", true},
                                {"file", a.out},
                                {"format", StatementFormatName(*format)},
                                {"account", s->account.ToHex()},
                                {"currency", s->currency.alpha},
                                {"from", FormatDateTime(s->from_ns)},
                                {"to", FormatDateTime(s->to_ns)},
                                {"entries", s->entries.size()},
                                {"opening_balance", FormatSignedMinor(s->opening_minor, ex)},
                                {"closing_balance", FormatSignedMinor(s->closing_minor, ex)},
                                {"signature", sig_path.empty() ? nlohmann::ordered_json()
                                                               : nlohmann::ordered_json(sig_path)}};
    std::printf("%s\n", j.dump().c_str());
  } else if (a.out != "-") {
    std::printf("statement: %zu entries, opening %s %s, closing %s %s -> %s%s\n", s->entries.size(),
                s->currency.alpha, FormatSignedMinor(s->opening_minor, ex).c_str(),
                s->currency.alpha, FormatSignedMinor(s->closing_minor, ex).c_str(), a.out.c_str(),
                sig_path.empty() ? "" : (" (signature " + sig_path + ")").c_str());
  }
  return kExitOk;
}

struct VerifyArgs {
  std::string file, signature, public_key;
  bool json = false;
};

int RunStatementVerify(const VerifyArgs& a) {
  Status st = VerifyFileSignature(a.file, a.signature, a.public_key);
  const bool valid = st.ok();
  if (!valid && st.code() != StatusCode::kPermissionDenied) {
    return Fail("statement verify", a.json, st);
  }
  if (a.json) {
    std::printf("%s\n",
                nlohmann::json({{"ok", true}, {"valid", valid}, {"file", a.file}}).dump().c_str());
  } else {
    std::printf("statement verify: %s: %s\n", a.file.c_str(),
                valid ? "signature OK" : "SIGNATURE INVALID (the file or signature was changed)");
  }
  return valid ? kExitOk : kExitCheckFailed;
}

struct PublicKeyArgs {
  std::string keys, key_id, master_key, out;
  bool json = false;
};

int RunStatementPublicKey(const PublicKeyArgs& a) {
  const char* cmd = "statement public-key";
  auto store = OpenKeyStore(a.keys, a.master_key);
  if (!store.ok()) return Fail(cmd, a.json, store.status());
  Status st = ExportKeyStorePublicKey(**store, a.key_id, a.out);
  if (!st.ok()) return Fail(cmd, a.json, st);
  if (a.json) {
    std::printf(
        "%s\n",
        nlohmann::json({{"ok", true}, {"key_id", a.key_id}, {"public_key", a.out}}).dump().c_str());
  } else {
    std::printf("statement public-key: %s -> %s\n", a.key_id.c_str(), a.out.c_str());
  }
  return kExitOk;
}

struct KeygenArgs {
  std::string private_path, public_path;
  bool json = false;
};

int RunStatementKeygen(const KeygenArgs& a) {
  Status st = GenerateSigningKeyPair(a.private_path, a.public_path);
  if (!st.ok()) return Fail("statement keygen", a.json, st);
  if (a.json) {
    std::printf("%s\n",
                nlohmann::json(
                    {{"ok", true}, {"private_key", a.private_path}, {"public_key", a.public_path}})
                    .dump()
                    .c_str());
  } else {
    std::printf("statement keygen: private key %s (mode 0600), public key %s\n",
                a.private_path.c_str(), a.public_path.c_str());
  }
  return kExitOk;
}

// ---- backup / restore ---------------------------------------------------------------

// Opens `dir` read-only and verifies it. Exit-code style result.
int VerifyCopy(const char* cmd, const std::string& dir, bool json, nlohmann::ordered_json* out) {
  auto copy = OpenFollower(dir);
  if (!copy.ok()) return Fail(cmd, json, copy.status());
  Progress progress("verifying events", 0, json);
  auto rep = (*copy)->Verify([&](uint64_t events) { progress.Update(events); });
  progress.Finish();
  Status closed = (*copy)->Close();
  if (!rep.ok()) return Fail(cmd, json, rep.status());
  if (!closed.ok()) return Fail(cmd, json, closed);
  (*out)["verified"] = rep->ok;
  (*out)["journal_entries"] = rep->journal_entries;
  (*out)["events"] = rep->events;
  (*out)["transfers"] = rep->transfers;
  (*out)["accounts"] = rep->accounts;
  (*out)["first_problem"] = rep->first_problem;
  return rep->ok ? kExitOk : kExitCheckFailed;
}

void PrintCopyResult(const char* cmd, bool json, int code, const nlohmann::ordered_json& j,
                     const std::string& where) {
  if (json) {
    nlohmann::ordered_json o = j;
    o["ok"] = code == kExitOk;
    std::printf("%s\n", o.dump().c_str());
    return;
  }
  if (code == kExitOk) {
    std::printf("%s: OK: %s verified (%llu journal entries, %llu events, %llu accounts)\n", cmd,
                where.c_str(), static_cast<unsigned long long>(j.value("journal_entries", 0ull)),
                static_cast<unsigned long long>(j.value("events", 0ull)),
                static_cast<unsigned long long>(j.value("accounts", 0ull)));
  } else {
    std::printf("%s: FAILED: %s does not verify: %s\n", cmd, where.c_str(),
                j.value("first_problem", std::string()).c_str());
  }
}

// The running switch's admin interface for a ledger folder: a switch's
// ledger is DATA/ledger and its admin.json DATA/admin.json (a data folder
// given instead of its ledger is accepted too).
std::optional<AdminEndpoint> FindAdmin(const std::string& ledger_dir) {
  std::error_code ec;
  fs::path dir = fs::weakly_canonical(fs::absolute(ledger_dir, ec), ec);
  if (dir.filename().empty()) dir = dir.parent_path();  // a trailing '/'
  if (auto a = ReadAdminFile(dir.string())) return a;
  if (dir.filename() != "ledger") return std::nullopt;
  return ReadAdminFile(dir.parent_path().string());
}

// Online: the running switch writes a checkpoint of its ledger into `to`
// (Ledger::Checkpoint, consistent). nullopt when no switch answers (the
// offline path then runs); else the exit code of a failure, or kExitOk.
std::optional<int> OnlineCheckpoint(const char* cmd, const std::string& data, const std::string& to,
                                    bool json) {
  std::optional<AdminEndpoint> admin = FindAdmin(data);
  if (!admin) return std::nullopt;
  std::error_code ec;
  const std::string abs = fs::absolute(to, ec).lexically_normal().string();
  if (ec) return Fail(cmd, json, kExitError, "cannot resolve " + to + ": " + ec.message());
  bool refused = false;
  constexpr uint32_t kBackupTimeoutMs = 600000;
  Result<nlohmann::json> r =
      CallAdmin(*admin, "backup", nlohmann::json{{"to", abs}}, kBackupTimeoutMs, &refused);
  if (refused) return std::nullopt;  // a stale admin.json
  if (!r.ok()) return Fail(cmd, json, r.status());
  return kExitOk;
}

struct BackupArgs {
  std::string data, to;
  bool json = false;
};

int RunBackup(const BackupArgs& a) {
  const char* cmd = "backup";
  if (!IsLedgerDir(a.data)) return Fail(cmd, a.json, kExitError, "no ledger at " + a.data);
  std::error_code ec;
  if (fs::exists(a.to, ec)) {
    return Fail(cmd, a.json, kExitError, a.to + " already exists: a backup needs a new folder");
  }
  std::optional<int> online = OnlineCheckpoint(cmd, a.data, a.to, a.json);
  if (online && *online != kExitOk) return *online;
  if (!online) {
    ledger::Options o;
    o.path = a.data;
    auto primary = Ledger::Open(o);
    if (!primary.ok()) {
      if (LooksLocked(primary.status())) {
        return Fail(cmd, a.json, kExitError,
                    "the ledger at " + a.data +
                        " is in use (a running narae-switch holds it) and no admin interface "
                        "answers: start the switch with --admin-listen for an online backup, "
                        "or stop it");
      }
      return Fail(cmd, a.json, primary.status());
    }
    Status cp = (*primary)->Checkpoint(a.to);
    Status closed = (*primary)->Close();
    if (!cp.ok()) return Fail(cmd, a.json, cp);
    if (!closed.ok()) return Fail(cmd, a.json, closed);
  }
  nlohmann::ordered_json j = {{"backup", a.to}, {"data", a.data}};
  const int code = VerifyCopy(cmd, a.to, a.json, &j);
  if (code == kExitError) return code;
  PrintCopyResult(cmd, a.json, code, j, a.to);
  return code;
}

struct RestoreArgs {
  std::string from, data;
  bool force = false;
  bool json = false;
};

// Refuses a data folder a running switch holds (or that cannot be opened as
// a primary for that reason).
Status EnsureNotInUse(const std::string& dir) {
  if (!IsLedgerDir(dir)) return Status::Ok();
  ledger::Options o;
  o.path = dir;
  auto primary = Ledger::Open(o);
  if (primary.ok()) return (*primary)->Close();
  if (LooksLocked(primary.status())) {
    return Status::FailedPrecondition(
        "the ledger at " + dir + " is in use (a running narae-switch holds it): stop it first");
  }
  return Status::Ok();  // unreadable: it is being replaced
}

int RunRestore(const RestoreArgs& a) {
  const char* cmd = "restore";
  if (!IsLedgerDir(a.from)) return Fail(cmd, a.json, kExitError, "no ledger backup at " + a.from);
  std::error_code ec;
  const bool exists = fs::exists(a.data, ec);
  if (exists && fs::equivalent(a.from, a.data, ec)) {
    return Fail(cmd, a.json, kExitError, "--from and --data are the same folder");
  }
  if (exists && !fs::is_directory(a.data, ec)) {
    return Fail(cmd, a.json, kExitError, a.data + " exists and is not a folder");
  }
  const bool non_empty = exists && !fs::is_empty(a.data, ec);
  if (non_empty && !a.force) {
    return Fail(cmd, a.json, kExitError,
                a.data + " is not empty: pass --force to replace it with the backup");
  }
  if (exists && FindAdmin(a.data)) {
    return Fail(cmd, a.json, kExitError,
                "a running narae-switch serves " + a.data +
                    " (its admin.json names a live process): stop it before restoring (restore "
                    "is offline only)");
  }
  if (non_empty) {
    Status free = EnsureNotInUse(a.data);
    if (!free.ok()) return Fail(cmd, a.json, free);
  }
  const std::string tmp = a.data + ".restore-" + std::to_string(::getpid());
  fs::remove_all(tmp, ec);
  fs::path parent = fs::path(a.data).parent_path();
  if (!parent.empty()) fs::create_directories(parent, ec);
  fs::copy(a.from, tmp, fs::copy_options::recursive, ec);
  if (ec) {
    fs::remove_all(tmp, ec);
    return Fail(cmd, a.json, kExitError, "cannot copy " + a.from + ": " + ec.message());
  }
  nlohmann::ordered_json j = {{"from", a.from}, {"data", a.data}};
  const int code = VerifyCopy(cmd, tmp, a.json, &j);
  if (code != kExitOk) {
    std::error_code ignored;
    fs::remove_all(tmp, ignored);
    if (code == kExitError) return code;
    PrintCopyResult(cmd, a.json, code, j, a.from);
    return code;
  }
  const std::string old = a.data + ".old-" + std::to_string(::getpid());
  if (exists) {
    fs::rename(a.data, old, ec);
    if (ec)
      return Fail(cmd, a.json, kExitError, "cannot move " + a.data + " aside: " + ec.message());
  }
  fs::rename(tmp, a.data, ec);
  if (ec) {
    std::error_code ignored;
    if (exists) fs::rename(old, a.data, ignored);
    return Fail(cmd, a.json, kExitError, "cannot move the copy into place: " + ec.message());
  }
  if (exists) fs::remove_all(old, ec);
  PrintCopyResult(cmd, a.json, code, j, a.data);
  return code;
}

}  // namespace

void RegisterAuditCommands(CLI::App& app) {
  static TrialBalanceArgs tb;  // NOLINT: lives for the process
  auto* t = app.add_subcommand(
      "trial-balance",
      "Debits and credits (pending, posted) per currency and account type; exit 1 unless they "
      "balance");
  t->add_option("--data", tb.data, "Data folder (read-only; works while the switch runs)")
      ->required();
  t->add_option("--at", tb.at,
                "Balances at this instant: RFC 3339 UTC (2026-11-28T12:00:00Z) or unix ns");
  t->add_flag("--json", tb.json, "JSON output");
  t->callback([] { SetExitCode(RunTrialBalance(tb)); });

  static StatementArgs st;  // NOLINT
  auto* s = app.add_subcommand(
      "statement",
      "An account's booked entries with opening and closing balances (or verify, keygen)");
  s->add_option("--data", st.data, "Data folder (read-only; works while the switch runs)");
  s->add_option("--account", st.account, "Account id: hex (up to 32 digits) or decimal");
  s->add_option("--from", st.from, "First day YYYY-MM-DD (from 00:00 UTC) or an RFC 3339 instant");
  s->add_option("--to", st.to, "Last day YYYY-MM-DD (to 24:00 UTC) or an RFC 3339 instant");
  s->add_option("--format", st.format, "camt053, mt940, csv or json");
  s->add_option("--out", st.out, "Output file ('-' for stdout, not with --sign)");
  s->add_flag("--sign", st.sign, "Write an Ed25519 detached signature to FILE.sig");
  s->add_option("--key-file", st.key_file, "Signing key: PKCS#8 PEM or 64 hex digits (mode 0600)");
  s->add_option("--keys", st.keys, "Key store folder (keys.txt), to sign with --key-id");
  s->add_option("--key-id", st.key_id, "STATEMENT_SIGNING key of the key store");
  s->add_option("--master-key", st.master_key,
                "Master key file of the key store (default: $NARAE_MASTER_KEY)");
  s->add_flag("--json", st.json, "JSON summary on stdout");
  s->require_subcommand(0, 1);

  static VerifyArgs va;  // NOLINT
  auto* v =
      s->add_subcommand("verify", "Check a statement's detached signature; exit 1 if invalid");
  v->add_option("file", va.file, "Statement file")->required();
  v->add_option("signature", va.signature, "Signature file (raw 64 bytes or base64)")->required();
  v->add_option("--public-key", va.public_key, "Ed25519 public key, PEM")->required();
  v->add_flag("--json", va.json, "JSON output");
  v->callback([] { SetExitCode(RunStatementVerify(va)); });

  static KeygenArgs kg;  // NOLINT
  auto* k = s->add_subcommand("keygen", "Create an Ed25519 statement-signing key pair");
  k->add_option("--out-private", kg.private_path, "Private key file to create (PEM, mode 0600)")
      ->required();
  k->add_option("--out-public", kg.public_path, "Public key file to create (PEM, for auditors)")
      ->required();
  k->add_flag("--json", kg.json, "JSON output");
  k->callback([] { SetExitCode(RunStatementKeygen(kg)); });

  static PublicKeyArgs pk;  // NOLINT
  auto* p = s->add_subcommand("public-key",
                              "Export the PEM public key of a key store's statement-signing key");
  p->add_option("--keys", pk.keys, "Key store folder (keys.txt)")->required();
  p->add_option("--key-id", pk.key_id, "STATEMENT_SIGNING key id")->required();
  p->add_option("--master-key", pk.master_key, "Master key file (default: $NARAE_MASTER_KEY)");
  p->add_option("--out", pk.out, "Public key file to create (PEM)")->required();
  p->add_flag("--json", pk.json, "JSON output");
  p->callback([] { SetExitCode(RunStatementPublicKey(pk)); });

  s->callback([v, k, p] {
    if (v->parsed() || k->parsed() || p->parsed()) return;
    SetExitCode(RunStatement(st));
  });

  static BackupArgs ba;  // NOLINT
  auto* b = app.add_subcommand(
      "backup",
      "Consistent copy of a ledger (RocksDB checkpoint; made by the running switch through its "
      "admin interface when there is one), then verify the copy");
  b->add_option("--data", ba.data, "Data folder")->required();
  b->add_option("--to", ba.to, "Backup folder (must not exist)")->required();
  b->add_flag("--json", ba.json, "JSON output");
  b->callback([] { SetExitCode(RunBackup(ba)); });

  static RestoreArgs ra;  // NOLINT
  auto* r = app.add_subcommand("restore", "Copy a backup into a data folder, then verify it");
  r->add_option("--from", ra.from, "Backup folder")->required();
  r->add_option("--data", ra.data, "Data folder to create (or replace with --force)")->required();
  r->add_flag("--force", ra.force, "Replace a non-empty data folder");
  r->add_flag("--json", ra.json, "JSON output");
  r->callback([] { SetExitCode(RunRestore(ra)); });
}

}  // namespace narae::tools
