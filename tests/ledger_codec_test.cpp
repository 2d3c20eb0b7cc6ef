// The record codec: the fast encoder of the hot records must write exactly
// what the (cereal) decoder reads, for every field value.
#include <gtest/gtest.h>

#include <random>

#include "ledger/codec.hpp"

namespace narae::ledger::codec {
namespace {

U128 RandomU128(std::mt19937_64& rng) { return U128{rng(), rng()}; }

Account RandomAccount(std::mt19937_64& rng) {
  Account a;
  a.id = AccountId{RandomU128(rng)};
  a.user_data_128 = RandomU128(rng);
  a.user_data_64 = rng();
  a.user_data_32 = static_cast<uint32_t>(rng());
  a.ledger = static_cast<uint32_t>(rng());
  a.code = static_cast<uint16_t>(rng());
  a.flags = static_cast<uint16_t>(rng());
  a.minimum_balance_minor = rng();
  a.overdraft_limit_minor = rng();
  a.debits_pending = rng();
  a.debits_posted = rng();
  a.credits_pending = rng();
  a.credits_posted = rng();
  a.timestamp = rng();
  return a;
}

Transfer RandomTransfer(std::mt19937_64& rng) {
  Transfer t;
  t.id = TransferId{RandomU128(rng)};
  t.debit_account_id = AccountId{RandomU128(rng)};
  t.credit_account_id = AccountId{RandomU128(rng)};
  t.amount_minor = rng();
  t.pending_id = TransferId{RandomU128(rng)};
  t.user_data_128 = RandomU128(rng);
  t.user_data_64 = rng();
  t.user_data_32 = static_cast<uint32_t>(rng());
  t.timeout_s = static_cast<uint32_t>(rng());
  t.ledger = static_cast<uint32_t>(rng());
  t.code = static_cast<uint16_t>(rng());
  t.flags = static_cast<uint16_t>(rng());
  t.timestamp = rng();
  return t;
}

TEST(LedgerCodec, AccountsRoundTripThroughTheDecoder) {
  std::mt19937_64 rng(7);
  for (int i = 0; i < 1000; ++i) {
    const Account a = RandomAccount(rng);
    Account back;
    ASSERT_TRUE(DecodeAccount(EncodeAccount(a), &back));
    EXPECT_EQ(back, a);
  }
}

TEST(LedgerCodec, EventsOfEveryKindRoundTripThroughTheDecoder) {
  std::mt19937_64 rng(11);
  for (int i = 0; i < 1000; ++i) {
    Event e;
    e.kind = static_cast<EventKind>(1 + i % 4);
    e.account = RandomAccount(rng);
    e.transfer = RandomTransfer(rng);
    e.change.id = AccountId{RandomU128(rng)};
    e.change.action = (i % 2) ? AccountAction::kFreeze : AccountAction::kClose;
    e.change.reason_code = static_cast<uint32_t>(rng());
    e.change.flags = static_cast<uint16_t>(rng());
    e.change.timestamp = rng();
    e.expiry.pending_id = TransferId{RandomU128(rng)};
    e.expiry.debit_account_id = AccountId{RandomU128(rng)};
    e.expiry.credit_account_id = AccountId{RandomU128(rng)};
    e.expiry.amount_minor = rng();
    e.expiry.ledger = static_cast<uint32_t>(rng());
    e.expiry.timestamp = rng();
    std::string bytes;
    EncodeEvent(e, &bytes);
    Event back;
    ASSERT_TRUE(DecodeEvent(bytes, &back)) << i;
    ASSERT_EQ(back.kind, e.kind);
    switch (e.kind) {
      case EventKind::kAccountCreated:
        EXPECT_EQ(back.account, e.account);
        break;
      case EventKind::kTransfer:
        EXPECT_EQ(back.transfer, e.transfer);
        break;
      case EventKind::kAccountChanged:
        EXPECT_EQ(back.change.id, e.change.id);
        EXPECT_EQ(back.change.action, e.change.action);
        EXPECT_EQ(back.change.reason_code, e.change.reason_code);
        EXPECT_EQ(back.change.flags, e.change.flags);
        EXPECT_EQ(back.change.timestamp, e.change.timestamp);
        break;
      case EventKind::kHoldExpired:
        EXPECT_EQ(back.expiry.pending_id, e.expiry.pending_id);
        EXPECT_EQ(back.expiry.amount_minor, e.expiry.amount_minor);
        EXPECT_EQ(back.expiry.timestamp, e.expiry.timestamp);
        break;
    }
    // Every truncation and one trailing byte are refused, never misread.
    for (size_t cut = 0; cut < bytes.size(); cut += 7) {
      EXPECT_FALSE(DecodeEvent(std::string_view(bytes).substr(0, cut), &back)) << cut;
    }
    EXPECT_FALSE(DecodeEvent(bytes + "x", &back));
  }
}

}  // namespace
}  // namespace narae::ledger::codec

namespace narae::ledger::codec {
namespace {

std::string Frame(uint64_t ts, std::string_view record) {
  std::string out;
  PutFrameHeader(&out, ts, static_cast<uint32_t>(record.size()));
  out.append(record);
  return out;
}

TEST(EventChunk, AcceptsOnlyWellFormedChunks) {
  const std::string key = KeyTs(100);
  EXPECT_TRUE(IsChunk(key, Frame(100, "a") + Frame(101, "bc")));
  EXPECT_FALSE(IsChunk(key, ""));
  EXPECT_FALSE(IsChunk(key, Frame(99, "a")));                     // first frame is not the key's
  EXPECT_FALSE(IsChunk(key, Frame(100, "a") + Frame(100, "b")));  // not increasing
  std::string cut = Frame(100, "abc");
  cut.pop_back();
  EXPECT_FALSE(IsChunk(key, cut));                      // record runs past the end
  EXPECT_FALSE(IsChunk(key, Frame(100, "a") + "xyz"));  // a partial header
  EXPECT_FALSE(IsChunk("short", Frame(100, "a")));
  std::string full;
  for (uint64_t i = 0; i <= kChunkEventsMax; ++i) full += Frame(100 + i, "r");
  EXPECT_FALSE(IsChunk(key, full));  // more events than a chunk holds
}

}  // namespace
}  // namespace narae::ledger::codec
