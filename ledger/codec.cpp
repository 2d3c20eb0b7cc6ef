#include "ledger/codec.hpp"

#include <rocksdb/iterator.h>

#include <bit>
#include <cereal/archives/portable_binary.hpp>
#include <cereal/types/array.hpp>
#include <cstring>
#include <istream>
#include <ostream>
#include <streambuf>
#include <type_traits>

namespace narae::ledger {
namespace {
// A record of an unknown version is corruption, never a crash.
void CheckVersion(std::uint32_t version) {
  if (version != 1) throw cereal::Exception("unsupported record version");
}
}  // namespace

template <class Archive>
void serialize(Archive& ar, U128& v) {
  ar(v.hi, v.lo);
}
template <class Archive, typename Tag>
void serialize(Archive& ar, Id<Tag>& v) {
  ar(v.value);
}
template <class Archive>
void serialize(Archive& ar, Account& a, const std::uint32_t version) {
  CheckVersion(version);
  ar(a.id, a.user_data_128, a.user_data_64, a.user_data_32, a.ledger, a.code, a.flags,
     a.minimum_balance_minor, a.overdraft_limit_minor, a.debits_pending, a.debits_posted,
     a.credits_pending, a.credits_posted, a.timestamp);
}
template <class Archive>
void serialize(Archive& ar, Transfer& t, const std::uint32_t version) {
  CheckVersion(version);
  ar(t.id, t.debit_account_id, t.credit_account_id, t.amount_minor, t.pending_id, t.user_data_128,
     t.user_data_64, t.user_data_32, t.timeout_s, t.ledger, t.code, t.flags, t.timestamp);
}
template <class Archive>
void serialize(Archive& ar, AccountChange& c, const std::uint32_t version) {
  CheckVersion(version);
  ar(c.id, c.action, c.reason_code, c.flags, c.timestamp);
}
template <class Archive>
void serialize(Archive& ar, JournalEntry& j, const std::uint32_t version) {
  CheckVersion(version);
  ar(j.sequence, j.first_timestamp, j.last_timestamp, j.event_count, j.events_digest,
     j.previous_hash, j.hash);
}

namespace codec {
template <class Archive>
void serialize(Archive& ar, Expiry& e, const std::uint32_t version) {
  CheckVersion(version);
  ar(e.pending_id, e.debit_account_id, e.credit_account_id, e.amount_minor, e.ledger, e.timestamp);
}
template <class Archive>
void serialize(Archive& ar, Meta& m, const std::uint32_t version) {
  CheckVersion(version);
  ar(m.last_timestamp, m.journal_sequence, m.journal_hash, m.accounts_snapshot_ts);
}
}  // namespace codec
}  // namespace narae::ledger

CEREAL_CLASS_VERSION(narae::ledger::Account, 1)
CEREAL_CLASS_VERSION(narae::ledger::Transfer, 1)
CEREAL_CLASS_VERSION(narae::ledger::AccountChange, 1)
CEREAL_CLASS_VERSION(narae::ledger::JournalEntry, 1)
CEREAL_CLASS_VERSION(narae::ledger::codec::Expiry, 1)
CEREAL_CLASS_VERSION(narae::ledger::codec::Meta, 1)

namespace narae::ledger::codec {
namespace {

constexpr size_t kRecordBytesMax = 256;

// A streambuf that appends to a std::string (no copies, no locale work).
class StringSink : public std::streambuf {
 public:
  explicit StringSink(std::string* out) : out_(out) {}

 protected:
  std::streamsize xsputn(const char* s, std::streamsize n) override {
    out_->append(s, static_cast<size_t>(n));
    return n;
  }
  int_type overflow(int_type c) override {
    if (c != traits_type::eof()) out_->push_back(static_cast<char>(c));
    return c;
  }

 private:
  std::string* out_;
};

// A streambuf reading a fixed span; reading past the end fails the archive.
class SpanSource : public std::streambuf {
 public:
  explicit SpanSource(std::string_view data) {
    char* b = const_cast<char*>(data.data());  // NOLINT: read-only use
    setg(b, b, b + data.size());
  }
};

// The hot records (events, account snapshots) are written without
// cereal's stream machinery: FastOut walks the same serialize() functions
// and appends the bytes cereal's portable binary archive writes on a
// little-endian host (an endianness byte, the class version as uint32,
// then each arithmetic field's bytes), so DecodeEvent/DecodeAccount (cereal)
// read them; tests check the round trip. About 5x cheaper than a
// std::ostream per record.
static_assert(std::endian::native == std::endian::little, "FastOut writes host byte order");
class FastOut {
 public:
  FastOut() { Put(static_cast<uint8_t>(1)); }
  template <typename T>
  void Top(const T& value) {
    Put(static_cast<std::uint32_t>(1));           // CEREAL_CLASS_VERSION of every record is 1
    serialize(*this, const_cast<T&>(value), 1u);  // NOLINT: serialize only reads here
  }
  template <typename... Ts>
  void operator()(Ts&... fields) {
    (Field(fields), ...);
  }
  // The record, built on the stack and appended to its output at once (an
  // append per field cost more than the encoding itself).
  std::string_view bytes() const { return {buf_, size_}; }

 private:
  template <typename T>
  requires std::is_arithmetic_v<T>
  void Field(T& v) { Put(v); }
  template <typename T>
  requires std::is_enum_v<T>
  void Field(T& v) { Put(static_cast<std::underlying_type_t<T>>(v)); }
  void Field(U128& v) { serialize(*this, v); }
  template <typename Tag>
  void Field(Id<Tag>& v) {
    serialize(*this, v);
  }
  template <typename T>
  requires std::is_arithmetic_v<T>
  void Put(T v) {
    NARAE_CHECK(size_ + sizeof(T) <= sizeof(buf_));
    std::memcpy(buf_ + size_, &v, sizeof(T));
    size_ += sizeof(T);
  }
  char buf_[kRecordBytesMax];  // every hot record is smaller (an account: 113 bytes)
  size_t size_ = 0;
};

template <typename T>
void Encode(const T& value, std::string* out) {
  StringSink sink(out);
  std::ostream os(&sink);
  cereal::PortableBinaryOutputArchive ar(os);
  ar(value);
}
template <typename T>
void EncodeFast(const T& value, std::string* out) {
  FastOut ar;
  ar.Top(value);
  out->append(ar.bytes());
}

template <typename T>
bool Decode(std::string_view data, T* value) {
  SpanSource src(data);
  std::istream is(&src);
  try {
    cereal::PortableBinaryInputArchive ar(is);
    ar(*value);
  } catch (const std::exception&) {
    return false;
  }
  // Trailing garbage is corruption too.
  return is.peek() == std::char_traits<char>::eof();
}

}  // namespace

uint64_t Event::timestamp() const {
  switch (kind) {
    case EventKind::kAccountCreated:
      return account.timestamp;
    case EventKind::kTransfer:
      return transfer.timestamp;
    case EventKind::kAccountChanged:
      return change.timestamp;
    case EventKind::kHoldExpired:
      return expiry.timestamp;
  }
  return 0;
}

void PutU64(std::string* out, uint64_t v) {
  char b[8];
  for (int i = 7; i >= 0; --i) {
    b[i] = static_cast<char>(v & 0xff);
    v >>= 8;
  }
  out->append(b, 8);
}
void PutU128(std::string* out, U128 v) {
  PutU64(out, v.hi);
  PutU64(out, v.lo);
}
uint64_t GetU64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
U128 GetU128(const char* p) { return U128{GetU64(p), GetU64(p + 8)}; }

void PutFrameHeader(std::string* out, uint64_t ts, uint32_t record_bytes) {
  PutU64(out, ts);
  const char len[4] = {static_cast<char>(record_bytes >> 24), static_cast<char>(record_bytes >> 16),
                       static_cast<char>(record_bytes >> 8), static_cast<char>(record_bytes)};
  out->append(len, 4);
}

namespace {
uint32_t GetU32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(p[i]);
  return v;
}
}  // namespace

bool IsChunk(std::string_view key, std::string_view value) {
  if (key.size() != 8 || value.empty()) return false;
  uint64_t prev = 0;
  size_t pos = 0;
  for (size_t n = 0; pos < value.size(); ++n) {
    if (n == kChunkEventsMax || value.size() - pos < kFrameHeaderBytes) return false;
    const uint64_t ts = GetU64(value.data() + pos);
    const uint32_t len = GetU32(value.data() + pos + 8);
    if (value.size() - pos - kFrameHeaderBytes < len) return false;
    if (n == 0 ? ts != GetU64(key.data()) : ts <= prev) return false;
    prev = ts;
    pos += kFrameHeaderBytes + len;
  }
  return true;
}

void EventCursor::SeekToFirst() {
  any_ = false;
  it_->SeekToFirst();
  EnterChunk();
}

void EventCursor::Seek(uint64_t ts) {
  any_ = false;
  // The chunk holding `ts` starts at or before it.
  it_->SeekForPrev(KeyTs(ts));
  if (!it_->Valid()) it_->SeekToFirst();
  EnterChunk();
  while (valid_ && ts_ < ts) Next();
}

void EventCursor::Next() {
  if (!valid_) return;
  if (next_pos_ < chunk_.size()) {
    pos_ = next_pos_;
    ParseFrame();
    return;
  }
  it_->Next();
  EnterChunk();
}

void EventCursor::EnterChunk() {
  valid_ = false;
  if (!problem_.empty() || !it_->Valid()) return;
  if (it_->key().size() != 8) {
    problem_ = "malformed event key";
    return;
  }
  chunk_ = std::string_view(it_->value().data(), it_->value().size());
  pos_ = 0;
  ParseFrame();
}

void EventCursor::ParseFrame() {
  valid_ = false;
  if (chunk_.size() - pos_ < kFrameHeaderBytes) {
    problem_ = "malformed event chunk at " + std::to_string(GetU64(it_->key().data()));
    return;
  }
  const uint64_t ts = GetU64(chunk_.data() + pos_);
  const uint32_t len = GetU32(chunk_.data() + pos_ + 8);
  if (chunk_.size() - pos_ - kFrameHeaderBytes < len ||
      (pos_ == 0 && ts != GetU64(it_->key().data())) || (any_ && ts <= prev_ts_)) {
    problem_ = "malformed event chunk at " + std::to_string(GetU64(it_->key().data()));
    return;
  }
  prev_ts_ = ts_ = ts;
  any_ = true;
  record_ = chunk_.substr(pos_ + kFrameHeaderBytes, len);
  next_pos_ = pos_ + kFrameHeaderBytes + len;
  valid_ = true;
}

std::string Key128(U128 id) {
  std::string k;
  k.reserve(16);
  PutU128(&k, id);
  return k;
}
std::string Key128Ts(U128 id, uint64_t ts) {
  std::string k;
  k.reserve(24);
  PutU128(&k, id);
  PutU64(&k, ts);
  return k;
}
std::string KeyTs(uint64_t ts) {
  std::string k;
  k.reserve(8);
  PutU64(&k, ts);
  return k;
}

std::string EncodeAccount(const Account& a) {
  std::string out;
  out.reserve(128);
  EncodeFast(a, &out);
  return out;
}
void EncodeAccount(const Account& a, std::string* out) { EncodeFast(a, out); }
bool DecodeAccount(std::string_view data, Account* a) { return Decode(data, a); }

void EncodeEvent(const Event& e, std::string* out) {
  out->push_back(static_cast<char>(e.kind));
  switch (e.kind) {
    case EventKind::kAccountCreated:
      EncodeFast(e.account, out);
      break;
    case EventKind::kTransfer:
      EncodeFast(e.transfer, out);
      break;
    case EventKind::kAccountChanged:
      EncodeFast(e.change, out);
      break;
    case EventKind::kHoldExpired:
      EncodeFast(e.expiry, out);
      break;
  }
}

bool DecodeEvent(std::string_view data, Event* e) {
  if (data.empty()) return false;
  auto kind = static_cast<uint8_t>(data[0]);
  data.remove_prefix(1);
  switch (kind) {
    case static_cast<uint8_t>(EventKind::kAccountCreated):
      e->kind = EventKind::kAccountCreated;
      return Decode(data, &e->account);
    case static_cast<uint8_t>(EventKind::kTransfer):
      e->kind = EventKind::kTransfer;
      return Decode(data, &e->transfer);
    case static_cast<uint8_t>(EventKind::kAccountChanged):
      e->kind = EventKind::kAccountChanged;
      return Decode(data, &e->change);
    case static_cast<uint8_t>(EventKind::kHoldExpired):
      e->kind = EventKind::kHoldExpired;
      return Decode(data, &e->expiry);
    default:
      return false;
  }
}

std::string EncodeMeta(const Meta& m) {
  std::string out;
  Encode(m, &out);
  return out;
}
bool DecodeMeta(std::string_view data, Meta* m) { return Decode(data, m); }
std::string EncodeJournal(const JournalEntry& j) {
  std::string out;
  Encode(j, &out);
  return out;
}
bool DecodeJournal(std::string_view data, JournalEntry* j) { return Decode(data, j); }

}  // namespace narae::ledger::codec
