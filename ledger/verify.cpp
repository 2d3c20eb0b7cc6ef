#include "ledger/verify.hpp"

#include <map>
#include <unordered_map>

#include "ledger/codec.hpp"

namespace narae::ledger {
namespace {

struct Balances {
  uint64_t dp = 0, dpo = 0, cp = 0, cpo = 0;
  uint16_t flags = 0;
  uint32_t ledger = 0;
};
struct PendingInfo {
  AccountId dr, cr;
  uint64_t amount = 0;
};

std::string Hex(const std::array<uint8_t, 32>& h) {
  static const char* d = "0123456789abcdef";
  std::string s;
  for (uint8_t b : h) {
    s.push_back(d[b >> 4]);
    s.push_back(d[b & 15]);
  }
  return s;
}

bool Add(uint64_t* a, uint64_t b) {
  if (*a > ~uint64_t{0} - b) return false;
  *a += b;
  return true;
}
bool Sub(uint64_t* a, uint64_t b) {
  if (*a < b) return false;
  *a -= b;
  return true;
}

// Replays the ordered events into balances. Returns "" or the problem.
class Replay {
 public:
  std::string Apply(const codec::Event& e) {
    switch (e.kind) {
      case codec::EventKind::kAccountCreated: {
        const Account& a = e.account;
        if (accounts_.count(a.id)) return "account created twice: " + a.id.ToHex();
        accounts_[a.id] = {0, 0, 0, 0, a.flags, a.ledger};
        return "";
      }
      case codec::EventKind::kAccountChanged: {
        auto it = accounts_.find(e.change.id);
        if (it == accounts_.end()) return "change of unknown account " + e.change.id.ToHex();
        uint16_t& f = it->second.flags;
        switch (e.change.action) {
          case AccountAction::kClose:
            f |= account_flags::kClosed;
            break;
          case AccountAction::kReopen:
            f &= uint16_t(~account_flags::kClosed);
            break;
          case AccountAction::kFreeze:
            f |= account_flags::kFrozen;
            break;
          case AccountAction::kUnfreeze:
            f &= uint16_t(~account_flags::kFrozen);
            break;
          default:
            return "unknown account action";
        }
        return "";
      }
      case codec::EventKind::kTransfer:
        return ApplyTransfer(e.transfer);
      case codec::EventKind::kHoldExpired: {
        auto p = pending_.find(e.expiry.pending_id);
        if (p == pending_.end())
          return "expiry of a hold not pending " + e.expiry.pending_id.ToHex();
        if (!Release(p->second)) return "expiry underflows pending balances";
        pending_.erase(p);
        return "";
      }
    }
    return "unknown event kind";
  }
  const std::unordered_map<AccountId, Balances, IdHash>& accounts() const { return accounts_; }
  const std::unordered_map<TransferId, PendingInfo, IdHash>& pending() const { return pending_; }
  uint64_t transfers = 0;

 private:
  bool Release(const PendingInfo& p) {
    return Sub(&accounts_[p.dr].dp, p.amount) && Sub(&accounts_[p.cr].cp, p.amount);
  }
  std::string ApplyTransfer(const Transfer& t) {
    ++transfers;
    auto d = accounts_.find(t.debit_account_id);
    auto c = accounts_.find(t.credit_account_id);
    if (d == accounts_.end() || c == accounts_.end()) {
      return "transfer " + t.id.ToHex() + " names an unknown account";
    }
    if (d->second.ledger != t.ledger || c->second.ledger != t.ledger) {
      return "transfer " + t.id.ToHex() + " crosses ledgers";
    }
    namespace tf = transfer_flags;
    if (t.flags & (tf::kPostPendingTransfer | tf::kVoidPendingTransfer)) {
      auto p = pending_.find(t.pending_id);
      if (p == pending_.end()) return "post/void of a hold not pending: " + t.id.ToHex();
      if (!Release(p->second)) return "post/void underflows pending balances";
      pending_.erase(p);
      if (t.flags & tf::kPostPendingTransfer) {
        if (!Add(&d->second.dpo, t.amount_minor) || !Add(&c->second.cpo, t.amount_minor)) {
          return "posted balance overflow";
        }
      }
      return "";
    }
    if (t.flags & tf::kPending) {
      if (!Add(&d->second.dp, t.amount_minor) || !Add(&c->second.cp, t.amount_minor)) {
        return "pending balance overflow";
      }
      pending_[t.id] = {t.debit_account_id, t.credit_account_id, t.amount_minor};
      return "";
    }
    if (!Add(&d->second.dpo, t.amount_minor) || !Add(&c->second.cpo, t.amount_minor)) {
      return "posted balance overflow";
    }
    return "";
  }

  std::unordered_map<AccountId, Balances, IdHash> accounts_;
  std::unordered_map<TransferId, PendingInfo, IdHash> pending_;
};

}  // namespace

void UpdateEventDigest(EVP_MD_CTX* md, uint64_t timestamp, std::string_view record) {
  std::string head;
  codec::PutU64(&head, timestamp);
  uint32_t n = static_cast<uint32_t>(record.size());
  char len[4] = {char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
  head.append(len, 4);
  NARAE_CHECK(EVP_DigestUpdate(md, head.data(), head.size()) == 1);
  NARAE_CHECK(EVP_DigestUpdate(md, record.data(), record.size()) == 1);
}

std::array<uint8_t, 32> JournalHash(const JournalEntry& j) {
  std::string buf(j.previous_hash.begin(), j.previous_hash.end());
  codec::PutU64(&buf, j.sequence);
  codec::PutU64(&buf, j.first_timestamp);
  codec::PutU64(&buf, j.last_timestamp);
  codec::PutU64(&buf, j.event_count);
  buf.append(j.events_digest.begin(), j.events_digest.end());
  std::array<uint8_t, 32> out{};
  unsigned int len = 0;
  NARAE_CHECK(EVP_Digest(buf.data(), buf.size(), out.data(), &len, EVP_sha256(), nullptr) == 1);
  return out;
}

Result<VerifyReport> RunVerify(VerifySource* src, const std::function<void(uint64_t)>& progress) {
  VerifyReport rep;
  auto fail = [&](std::string why) {
    rep.ok = false;
    rep.first_problem = std::move(why);
    return rep;
  };
  codec::Meta meta;
  if (src->meta && !codec::DecodeMeta(*src->meta, &meta)) {
    return fail("meta record cannot be decoded");
  }
  Replay replay;
  // The accounts family is a snapshot as of meta.accounts_snapshot_ts:
  // compare it with the replay when the scan reaches that point.
  bool snapshot_compared = false;
  uint64_t stored = 0;
  auto compare_snapshot = [&]() -> std::string {
    snapshot_compared = true;
    for (src->accounts->SeekToFirst(); src->accounts->Valid(); src->accounts->Next()) {
      Account a;
      rocksdb::Slice v = src->accounts->value();
      if (!codec::DecodeAccount(std::string_view(v.data(), v.size()), &a)) {
        return "account record cannot be decoded";
      }
      ++stored;
      auto it = replay.accounts().find(a.id);
      if (it == replay.accounts().end()) return "account " + a.id.ToHex() + " has no event";
      const Balances& b = it->second;
      if (a.debits_pending != b.dp || a.debits_posted != b.dpo || a.credits_pending != b.cp ||
          a.credits_posted != b.cpo) {
        return "account " + a.id.ToHex() + ": stored balances differ from the transfers";
      }
      if (a.flags != b.flags) return "account " + a.id.ToHex() + ": flags differ";
    }
    if (!src->accounts->status().ok())
      return "reading accounts: " + src->accounts->status().ToString();
    if (stored != replay.accounts().size()) return "accounts missing from the store";
    return "";
  };
  std::array<uint8_t, 32> prev{};
  uint64_t expected_seq = 1;
  codec::EventCursor ev(src->events.get());
  ev.SeekToFirst();
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> md(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  NARAE_CHECK(md != nullptr);
  for (src->journal->SeekToFirst(); src->journal->Valid(); src->journal->Next()) {
    JournalEntry j;
    rocksdb::Slice v = src->journal->value();
    if (!codec::DecodeJournal(std::string_view(v.data(), v.size()), &j)) {
      return fail("journal entry " + std::to_string(expected_seq) + " cannot be decoded");
    }
    const std::string where = "journal entry " + std::to_string(j.sequence);
    if (j.sequence != expected_seq) {
      return fail("journal sequence gap: expected " + std::to_string(expected_seq) + ", found " +
                  std::to_string(j.sequence));
    }
    if (j.previous_hash != prev) return fail(where + ": previous hash does not link");
    NARAE_CHECK(EVP_DigestInit_ex(md.get(), EVP_sha256(), nullptr) == 1);
    uint64_t count = 0;
    for (; ev.Valid(); ev.Next()) {
      uint64_t ts = ev.timestamp();
      if (ts < j.first_timestamp) {
        return fail("event at " + std::to_string(ts) + " is not covered by the journal");
      }
      if (ts > j.last_timestamp) break;
      std::string_view rec = ev.record();
      codec::Event e;
      if (!codec::DecodeEvent(rec, &e) || e.timestamp() != ts) {
        return fail("event at " + std::to_string(ts) + " cannot be decoded");
      }
      if (!snapshot_compared && ts > meta.accounts_snapshot_ts) {
        std::string problem = compare_snapshot();
        if (!problem.empty()) return fail(problem);
      }
      UpdateEventDigest(md.get(), ts, rec);
      std::string problem = replay.Apply(e);
      if (!problem.empty()) return fail(where + ": " + problem);
      ++count;
      ++rep.events;
      if (progress && rep.events % 65536 == 0) progress(rep.events);
    }
    if (!ev.problem().empty()) return fail(ev.problem());
    std::array<uint8_t, 32> digest{};
    unsigned int len = 0;
    NARAE_CHECK(EVP_DigestFinal_ex(md.get(), digest.data(), &len) == 1);
    if (count != j.event_count) {
      return fail(where + ": holds " + std::to_string(count) + " events, journal says " +
                  std::to_string(j.event_count));
    }
    if (digest != j.events_digest) return fail(where + ": events digest mismatch (tampered)");
    if (JournalHash(j) != j.hash) return fail(where + ": hash mismatch");
    prev = j.hash;
    ++expected_seq;
    ++rep.journal_entries;
  }
  if (!src->journal->status().ok()) return Status::IOError(src->journal->status().ToString());
  if (ev.Valid()) return fail("events after the last journal entry");
  if (!ev.problem().empty()) return fail(ev.problem());
  if (!src->events->status().ok()) return Status::IOError(src->events->status().ToString());
  if (src->meta) {
    if (meta.journal_sequence != expected_seq - 1 || meta.journal_hash != prev) {
      return fail("journal head in meta (" + Hex(meta.journal_hash) + ") does not match chain");
    }
  } else if (expected_seq != 1) {
    return fail("meta record missing");
  }
  if (!snapshot_compared) {
    std::string problem = compare_snapshot();
    if (!problem.empty()) return fail(problem);
  }
  // What readers are served must equal the full replay.
  for (const auto& [id, a] : src->current) {
    auto it = replay.accounts().find(id);
    if (it == replay.accounts().end()) return fail("served account " + id.ToHex() + " unknown");
    const Balances& b = it->second;
    if (a.debits_pending != b.dp || a.debits_posted != b.dpo || a.credits_pending != b.cp ||
        a.credits_posted != b.cpo) {
      return fail("account " + id.ToHex() + ": served balances differ from the transfers");
    }
  }
  // Totals are 128-bit: a ledger's sum of balances may exceed 2^64.
  struct Totals {
    unsigned __int128 dp = 0, dpo = 0, cp = 0, cpo = 0;
  };
  std::map<uint32_t, Totals> sums;
  for (const auto& [id, b] : replay.accounts()) {
    Totals& s = sums[b.ledger];
    s.dp += b.dp;
    s.dpo += b.dpo;
    s.cp += b.cp;
    s.cpo += b.cpo;
  }
  for (const auto& [ledger, s] : sums) {
    if (s.dp != s.cp || s.dpo != s.cpo) {
      return fail("ledger " + std::to_string(ledger) + ": debits do not equal credits");
    }
  }
  // Open holds must be exactly the replayed pending transfers.
  uint64_t open = 0;
  for (src->holds_open->SeekToFirst(); src->holds_open->Valid(); src->holds_open->Next()) {
    if (src->holds_open->key().size() != 16) return fail("malformed open hold key");
    TransferId id{codec::GetU128(src->holds_open->key().data())};
    if (!replay.pending().count(id)) return fail("open hold " + id.ToHex() + " is not pending");
    ++open;
  }
  if (open != replay.pending().size()) return fail("a pending hold is missing from open holds");
  rep.accounts = replay.accounts().size();
  rep.transfers = replay.transfers;
  rep.ok = true;
  return rep;
}

}  // namespace narae::ledger
