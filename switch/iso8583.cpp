// ISO 8583:1987 codec. See iso8583.hpp and docs/iso8583.md.
#include "switch/iso8583.hpp"

#include <bit>
#include <cstring>

namespace narae::switching {
namespace {

using LF = LengthFormat;
using FT = FieldType;

constexpr FieldSpec F(FT type, uint16_t length, const char* name) {
  return FieldSpec{type, LF::kFixed, length, name};
}
constexpr FieldSpec LL(FT type, uint16_t length_max, const char* name) {
  return FieldSpec{type, LF::kLlvar, length_max, name};
}
constexpr FieldSpec LLL(FT type, uint16_t length_max, const char* name) {
  return FieldSpec{type, LF::kLllvar, length_max, name};
}

constexpr FieldTable MakeIso87Table() {
  FieldTable t{};
  t[0] = F(FT::kN, 4, "message type indicator");
  t[1] = F(FT::kB, 8, "secondary bitmap");
  t[2] = LL(FT::kN, 19, "primary account number");
  t[3] = F(FT::kN, 6, "processing code");
  t[4] = F(FT::kN, 12, "amount, transaction");
  t[5] = F(FT::kN, 12, "amount, settlement");
  t[6] = F(FT::kN, 12, "amount, cardholder billing");
  t[7] = F(FT::kN, 10, "transmission date and time");
  t[8] = F(FT::kN, 8, "amount, cardholder billing fee");
  t[9] = F(FT::kN, 8, "conversion rate, settlement");
  t[10] = F(FT::kN, 8, "conversion rate, cardholder billing");
  t[11] = F(FT::kN, 6, "system trace audit number");
  t[12] = F(FT::kN, 6, "time, local transaction");
  t[13] = F(FT::kN, 4, "date, local transaction");
  t[14] = F(FT::kN, 4, "date, expiration");
  t[15] = F(FT::kN, 4, "date, settlement");
  t[16] = F(FT::kN, 4, "date, conversion");
  t[17] = F(FT::kN, 4, "date, capture");
  t[18] = F(FT::kN, 4, "merchant type");
  t[19] = F(FT::kN, 3, "acquiring institution country code");
  t[20] = F(FT::kN, 3, "PAN extended, country code");
  t[21] = F(FT::kN, 3, "forwarding institution country code");
  t[22] = F(FT::kN, 3, "point of service entry mode");
  t[23] = F(FT::kN, 3, "card sequence number");
  t[24] = F(FT::kN, 3, "network international identifier");
  t[25] = F(FT::kN, 2, "point of service condition code");
  t[26] = F(FT::kN, 2, "point of service PIN capture code");
  t[27] = F(FT::kN, 1, "authorization identification response length");
  t[28] = F(FT::kXn, 9, "amount, transaction fee");
  t[29] = F(FT::kXn, 9, "amount, settlement fee");
  t[30] = F(FT::kXn, 9, "amount, transaction processing fee");
  t[31] = F(FT::kXn, 9, "amount, settlement processing fee");
  t[32] = LL(FT::kN, 11, "acquiring institution identification code");
  t[33] = LL(FT::kN, 11, "forwarding institution identification code");
  t[34] = LL(FT::kAns, 28, "PAN extended");
  t[35] = LL(FT::kZ, 37, "track 2 data");
  t[36] = LLL(FT::kZ, 104, "track 3 data");
  t[37] = F(FT::kAn, 12, "retrieval reference number");
  t[38] = F(FT::kAn, 6, "authorization identification response");
  t[39] = F(FT::kAn, 2, "response code");
  t[40] = F(FT::kAn, 3, "service restriction code");
  t[41] = F(FT::kAns, 8, "card acceptor terminal identification");
  t[42] = F(FT::kAns, 15, "card acceptor identification code");
  t[43] = F(FT::kAns, 40, "card acceptor name/location");
  t[44] = LL(FT::kAns, 25, "additional response data");
  t[45] = LL(FT::kAns, 76, "track 1 data");
  t[46] = LLL(FT::kAns, 999, "additional data, ISO");
  t[47] = LLL(FT::kAns, 999, "additional data, national");
  t[48] = LLL(FT::kAns, 999, "additional data, private");
  t[49] = F(FT::kN, 3, "currency code, transaction");
  t[50] = F(FT::kN, 3, "currency code, settlement");
  t[51] = F(FT::kN, 3, "currency code, cardholder billing");
  t[52] = F(FT::kB, 8, "PIN data");
  t[53] = F(FT::kN, 16, "security related control information");
  t[54] = LLL(FT::kAn, 120, "additional amounts");
  t[55] = LLL(FT::kB, 999, "ICC data");
  t[56] = LLL(FT::kAns, 999, "reserved ISO");
  t[57] = LLL(FT::kAns, 999, "reserved national");
  t[58] = LLL(FT::kAns, 999, "reserved national");
  t[59] = LLL(FT::kAns, 999, "reserved national");
  t[60] = LLL(FT::kAns, 999, "reserved private");
  t[61] = LLL(FT::kAns, 999, "reserved private");
  t[62] = LLL(FT::kAns, 999, "Narae SIM token data");
  t[63] = LLL(FT::kAns, 999, "reserved private");
  t[64] = F(FT::kB, 8, "message authentication code");
  t[65] = F(FT::kB, 1, "bitmap, extended");
  t[66] = F(FT::kN, 1, "settlement code");
  t[67] = F(FT::kN, 2, "extended payment code");
  t[68] = F(FT::kN, 3, "receiving institution country code");
  t[69] = F(FT::kN, 3, "settlement institution country code");
  t[70] = F(FT::kN, 3, "network management information code");
  t[71] = F(FT::kN, 4, "message number");
  t[72] = F(FT::kN, 4, "message number, last");
  t[73] = F(FT::kN, 6, "date, action");
  t[74] = F(FT::kN, 10, "credits, number");
  t[75] = F(FT::kN, 10, "credits, reversal number");
  t[76] = F(FT::kN, 10, "debits, number");
  t[77] = F(FT::kN, 10, "debits, reversal number");
  t[78] = F(FT::kN, 10, "transfer, number");
  t[79] = F(FT::kN, 10, "transfer, reversal number");
  t[80] = F(FT::kN, 10, "inquiries, number");
  t[81] = F(FT::kN, 10, "authorizations, number");
  t[82] = F(FT::kN, 12, "credits, processing fee amount");
  t[83] = F(FT::kN, 12, "credits, transaction fee amount");
  t[84] = F(FT::kN, 12, "debits, processing fee amount");
  t[85] = F(FT::kN, 12, "debits, transaction fee amount");
  t[86] = F(FT::kN, 16, "credits, amount");
  t[87] = F(FT::kN, 16, "credits, reversal amount");
  t[88] = F(FT::kN, 16, "debits, amount");
  t[89] = F(FT::kN, 16, "debits, reversal amount");
  t[90] = F(FT::kN, 42, "original data elements");
  t[91] = F(FT::kAn, 1, "file update code");
  t[92] = F(FT::kAn, 2, "file security code");
  t[93] = F(FT::kAn, 6, "response indicator");
  t[94] = F(FT::kAn, 7, "service indicator");
  t[95] = F(FT::kAn, 42, "replacement amounts");
  t[96] = F(FT::kB, 16, "message security code");
  t[97] = F(FT::kXn, 17, "amount, net settlement");
  t[98] = F(FT::kAns, 25, "payee");
  t[99] = LL(FT::kN, 11, "settlement institution identification code");
  t[100] = LL(FT::kN, 11, "receiving institution identification code");
  t[101] = LL(FT::kAns, 17, "file name");
  t[102] = LL(FT::kAns, 28, "account identification 1");
  t[103] = LL(FT::kAns, 28, "account identification 2");
  t[104] = LLL(FT::kAns, 100, "transaction description");
  for (int f = 105; f <= 111; ++f) t[f] = LLL(FT::kAns, 999, "reserved ISO use");
  for (int f = 112; f <= 119; ++f) t[f] = LLL(FT::kAns, 999, "reserved national use");
  for (int f = 120; f <= 127; ++f) t[f] = LLL(FT::kAns, 999, "reserved private use");
  t[128] = F(FT::kB, 8, "message authentication code 2");
  return t;
}

constexpr FieldTable kIso87Table = MakeIso87Table();

// Character classes, one bit per FieldType that allows the byte.
constexpr uint8_t kClassN = 1 << 0;
constexpr uint8_t kClassAn = 1 << 1;
constexpr uint8_t kClassAns = 1 << 2;
constexpr uint8_t kClassZ = 1 << 3;

constexpr std::array<uint8_t, 256> MakeClasses() {
  std::array<uint8_t, 256> c{};
  for (int b = 0x20; b <= 0x7E; ++b) c[b] |= kClassAns;
  for (int b = '0'; b <= '9'; ++b) c[b] |= kClassN | kClassAn | kClassZ;
  for (int b = 'A'; b <= 'Z'; ++b) c[b] |= kClassAn;
  for (int b = 'a'; b <= 'z'; ++b) c[b] |= kClassAn;
  c[' '] |= kClassAn;
  c['='] |= kClassZ;
  c['D'] |= kClassZ;
  return c;
}
constexpr std::array<uint8_t, 256> kClasses = MakeClasses();

bool IsDigit(uint8_t b) { return (kClasses[b] & kClassN) != 0; }

bool AllDigits(std::string_view s) {
  for (char ch : s) {
    if (!IsDigit(static_cast<uint8_t>(ch))) return false;
  }
  return true;
}

const char* TypeName(FieldType type) {
  switch (type) {
    case FT::kNone:
      return "unspecified";
    case FT::kN:
      return "numeric";
    case FT::kAn:
      return "alphanumeric";
    case FT::kAns:
      return "alphanumeric-special";
    case FT::kZ:
      return "track";
    case FT::kXn:
      return "signed amount";
    case FT::kB:
      return "binary";
  }
  return "unknown";
}

std::string FieldLabel(int field, const FieldSpec& spec) {
  return "field " + std::to_string(field) + " (" + spec.name + ")";
}

std::string HexByte(uint8_t b) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  return std::string("0x") + kHex[b >> 4] + kHex[b & 0xF];
}

// Checks the content of a field against its type. `data` has the field's
// bytes only (no prefix).
Status CheckContent(int field, const FieldSpec& spec, const uint8_t* data, size_t size) {
  uint8_t mask = 0;
  size_t start = 0;
  switch (spec.type) {
    case FT::kB:
      return Status::Ok();
    case FT::kNone:
      return Status::InvalidArgument(FieldLabel(field, spec) + ": no spec");
    case FT::kN:
      mask = kClassN;
      break;
    case FT::kAn:
      mask = kClassAn;
      break;
    case FT::kAns:
      mask = kClassAns;
      break;
    case FT::kZ:
      mask = kClassZ;
      break;
    case FT::kXn:
      if (size == 0 || (data[0] != 'C' && data[0] != 'D')) {
        return Status::InvalidArgument(FieldLabel(field, spec) +
                                       ": signed amount must start with 'C' or 'D'");
      }
      mask = kClassN;
      start = 1;
      break;
  }
  for (size_t i = start; i < size; ++i) {
    if ((kClasses[data[i]] & mask) == 0) {
      return Status::InvalidArgument(FieldLabel(field, spec) + ": byte " + HexByte(data[i]) +
                                     " at position " + std::to_string(i) + " not allowed in a " +
                                     TypeName(spec.type) + " field");
    }
  }
  return Status::Ok();
}

// Eight bytes at a time (SWAR, exact for every byte value): true when all
// eight are ASCII digits. A digit has the high nibble 3, and adding 6 to its
// low nibble does not carry into the high one (no byte exceeds 0x45, so no
// carry crosses bytes either).
constexpr uint64_t kOnes = 0x0101010101010101ull;
constexpr uint64_t kHighBits = 0x8080808080808080ull;
bool WordAllDigits(uint64_t w) {
  constexpr uint64_t kHighNibbles = 0xF0F0F0F0F0F0F0F0ull;
  return (w & kHighNibbles) == 0x30 * kOnes && ((w + 6 * kOnes) & kHighNibbles) == 0x30 * kOnes;
}
// True when all eight bytes are printable ASCII (0x20..0x7E). Any byte below
// 0x20: the borrow-free subtraction sets its high bit (exact as an "any"
// test, Hacker's Delight 6-1); any byte above 0x7E: adding 1 or the byte
// itself sets its high bit (a carry out of 0xFF only follows such a byte).
bool WordAllPrintable(uint64_t w) {
  const uint64_t below = (w - 0x20 * kOnes) & ~w & kHighBits;
  const uint64_t above = ((w + kOnes) | w) & kHighBits;
  return (below | above) == 0;
}
uint64_t LoadWord(const uint8_t* p) {
  uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

// A field shorter than a word is checked as one word, padded with a byte
// that passes (`fill`); a longer one word by word, the last word overlapping
// the one before (checking a byte twice changes no "all" answer).
template <bool (*kWordOk)(uint64_t)>
bool AllBytes(const uint8_t* data, size_t size, uint8_t fill) {
  if (size < 8) {
    uint64_t w = fill * kOnes;
    for (size_t i = 0; i < size; ++i) {
      const unsigned shift = 8 * static_cast<unsigned>(i);
      w = (w & ~(uint64_t{0xFF} << shift)) | (uint64_t{data[i]} << shift);
    }
    return kWordOk(w);
  }
  for (size_t i = 0; i + 8 < size; i += 8) {
    if (!kWordOk(LoadWord(data + i))) return false;
  }
  return kWordOk(LoadWord(data + size - 8));
}

bool AllDigitBytes(const uint8_t* data, size_t size) {
  return AllBytes<WordAllDigits>(data, size, '0');
}

bool AllPrintableBytes(const uint8_t* data, size_t size) {
  return AllBytes<WordAllPrintable>(data, size, ' ');
}

// The class table for the other types (short fields: 37, 38, 39, 54),
// stopping at the first byte outside (a loop the compiler does not
// vectorize: the vector code cost more than it saved on such fields).
bool AllInClass(const uint8_t* data, size_t size, uint8_t mask) {
  for (size_t i = 0; i < size; ++i) {
    if ((kClasses[data[i]] & mask) == 0) return false;
  }
  return true;
}

// CheckContent's answer without building a message: the codec's hot path
// (every field of every message in and out). Digits and printable text are
// checked eight bytes at a time; the rest use the class table.
bool ContentOk(FieldType type, const uint8_t* data, size_t size) {
  switch (type) {
    case FT::kB:
      return true;
    case FT::kNone:
      return false;
    case FT::kN:
      return AllDigitBytes(data, size);
    case FT::kAns:
      return AllPrintableBytes(data, size);
    case FT::kAn:
      return AllInClass(data, size, kClassAn);
    case FT::kZ:
      return AllInClass(data, size, kClassZ);
    case FT::kXn:
      if (size == 0 || (data[0] != 'C' && data[0] != 'D')) return false;
      return AllDigitBytes(data + 1, size - 1);
  }
  return false;
}

size_t PrefixDigits(LengthFormat format) {
  switch (format) {
    case LF::kFixed:
      return 0;
    case LF::kLlvar:
      return 2;
    case LF::kLllvar:
      return 3;
  }
  return 0;
}

// Checks a value's length against its spec (Pack side).
Status CheckLength(int field, const FieldSpec& spec, size_t size) {
  if (spec.length_format == LF::kFixed) {
    if (size != spec.length_max) {
      return Status::InvalidArgument(FieldLabel(field, spec) + ": " + TypeName(spec.type) +
                                     " field of fixed length " + std::to_string(spec.length_max) +
                                     " has length " + std::to_string(size));
    }
  } else if (size > spec.length_max) {
    return Status::InvalidArgument(FieldLabel(field, spec) + ": length " + std::to_string(size) +
                                   " exceeds maximum " + std::to_string(spec.length_max));
  }
  return Status::Ok();
}

uint64_t LoadBigEndian64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

void StoreBigEndian64(uint64_t v, uint8_t* p) {
  for (int i = 7; i >= 0; --i) {
    p[i] = static_cast<uint8_t>(v & 0xFF);
    v >>= 8;
  }
}

// Lowest field number > `after` whose bit is set in `bits` (wire order), or 0.
int NextBit(const std::array<uint64_t, 2>& bits, int after) {
  for (int word = after / 64; word < 2; ++word) {
    uint64_t w = bits[word];
    int first_in_word = word * 64 + 1;
    if (after >= first_in_word) {
      int skip = after - first_in_word + 1;  // bits to drop from the top, 1..64
      w = skip >= 64 ? 0 : (w << skip) >> skip;
    }
    if (w != 0) return first_in_word + std::countl_zero(w);
  }
  return 0;
}

}  // namespace

const FieldTable& Iso87Table() { return kIso87Table; }

// ---------------------------------------------------------------------------
// Message

void Message::FieldNumberOutOfRange(int field) {
  NARAE_CHECK(field >= 1 && field <= kFieldNumberMax);
  std::abort();  // not reached
}

std::optional<std::span<const uint8_t>> Message::PackedIfUnchanged() const {
  if (!unpacked_) return std::nullopt;
  return std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(data_.data()), data_.size());
}

void Message::Set(int field, std::string_view value) {
  CheckFieldNumber(field);
  unpacked_ = false;
  // A value that points into data_ would dangle if data_ grows: copy it first.
  uintptr_t lo = reinterpret_cast<uintptr_t>(data_.data());
  uintptr_t hi = lo + data_.size();
  uintptr_t p = reinterpret_cast<uintptr_t>(value.data());
  if (!value.empty() && p >= lo && p < hi) {
    std::string copy(value);
    Set(field, copy);
    return;
  }
  Slot& slot = slots_[field];
  if (Has(field)) {
    live_bytes_ -= slot.size;
    if (value.size() <= slot.size) {
      std::memcpy(data_.data() + slot.offset, value.data(), value.size());
      slot.size = static_cast<uint32_t>(value.size());
      live_bytes_ += value.size();
      return;
    }
  }
  NARAE_CHECK(data_.size() + value.size() <= UINT32_MAX);
  slot.offset = static_cast<uint32_t>(data_.size());
  slot.size = static_cast<uint32_t>(value.size());
  data_.append(value.data(), value.size());
  live_bytes_ += value.size();
  present_[(field - 1) / 64] |= FieldBit(field);
  if (data_.size() > 2 * live_bytes_ + 1024) Compact();
}

void Message::SetBytes(int field, std::span<const uint8_t> value) {
  Set(field, std::string_view(reinterpret_cast<const char*>(value.data()), value.size()));
}

void Message::Clear(int field) {
  if (!Has(field)) return;
  unpacked_ = false;
  live_bytes_ -= slots_[field].size;
  slots_[field] = Slot{};
  present_[(field - 1) / 64] &= ~FieldBit(field);
}

int Message::FieldCount() const { return std::popcount(present_[0]) + std::popcount(present_[1]); }

int Message::NextField(int after) const {
  if (after < 0) after = 0;
  if (after >= kFieldNumberMax) return 0;
  return NextBit(present_, after);
}

void Message::Compact() {
  std::string packed;
  packed.reserve(live_bytes_);
  for (int f = NextField(0); f != 0; f = NextField(f)) {
    Slot& slot = slots_[f];
    uint32_t offset = static_cast<uint32_t>(packed.size());
    packed.append(data_, slot.offset, slot.size);
    slot.offset = offset;
  }
  data_ = std::move(packed);
}

bool Message::operator==(const Message& other) const {
  if (mti_ != other.mti_ || present_ != other.present_) return false;
  for (int f = NextField(0); f != 0; f = NextField(f)) {
    if (Get(f) != other.Get(f)) return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Unpack / Pack

Result<Message> Unpack(std::span<const uint8_t> body, const FieldTable& table) {
  const size_t size = body.size();
  const uint8_t* in = body.data();
  if (size < kMessageBytesMin) {
    return Status::InvalidArgument("message too short: " + std::to_string(size) +
                                   " bytes, at least 12 needed (MTI 4 + bitmap 8)");
  }
  if (size > kMessageBytesMax) {
    return Status::InvalidArgument("message too long: " + std::to_string(size) +
                                   " bytes, at most " + std::to_string(kMessageBytesMax));
  }
  for (size_t i = 0; i < kMtiBytes; ++i) {
    if (!IsDigit(in[i])) {
      return Status::InvalidArgument("bad MTI: byte " + HexByte(in[i]) + " at offset " +
                                     std::to_string(i) + " is not an ASCII digit");
    }
  }
  Message message(std::string_view(reinterpret_cast<const char*>(in), kMtiBytes));
  std::array<uint64_t, 2> bits{LoadBigEndian64(in + kMtiBytes), 0};
  size_t pos = kMtiBytes + kBitmapBytes;
  if ((bits[0] >> 63) != 0) {
    if (size < pos + kBitmapBytes) {
      return Status::InvalidArgument("message too short: bit 1 announces a secondary bitmap but " +
                                     std::to_string(size - pos) + " bytes follow the primary");
    }
    bits[1] = LoadBigEndian64(in + pos);
    pos += kBitmapBytes;
    if (bits[1] == 0) {
      return Status::InvalidArgument(
          "field 1: secondary bitmap present but announces no field 65..128");
    }
  }
  // The body is copied once, MTI, bitmaps and prefixes included (dead bytes
  // the slots skip): one copy instead of an append per field, and the
  // packed form stays at hand while nothing changes (PackedIfUnchanged).
  message.data_.assign(reinterpret_cast<const char*>(in), size);
  std::array<uint64_t, 2> data_bits{bits[0] & ~(uint64_t{1} << 63), bits[1]};
  size_t live_bytes = 0;
  int last_field = 0;
  for (int f = NextBit(data_bits, 0); f != 0; f = NextBit(data_bits, f)) {
    const FieldSpec& spec = table[f];
    if (spec.type == FT::kNone) {
      return Status::InvalidArgument("field " + std::to_string(f) +
                                     " is present in the bitmap but has no spec");
    }
    size_t length = spec.length_max;
    const size_t prefix = PrefixDigits(spec.length_format);
    if (prefix != 0) {
      if (size - pos < prefix) {
        return Status::InvalidArgument("message truncated: " + FieldLabel(f, spec) + " needs a " +
                                       std::to_string(prefix) + "-digit length prefix at offset " +
                                       std::to_string(pos) + ", " + std::to_string(size - pos) +
                                       " bytes left");
      }
      length = 0;
      for (size_t i = 0; i < prefix; ++i) {
        uint8_t b = in[pos + i];
        if (!IsDigit(b)) {
          return Status::InvalidArgument(FieldLabel(f, spec) + ": length prefix byte " +
                                         HexByte(b) + " at offset " + std::to_string(pos + i) +
                                         " is not an ASCII digit");
        }
        length = length * 10 + (b - '0');
      }
      if (length > spec.length_max) {
        return Status::InvalidArgument(FieldLabel(f, spec) + ": length prefix " +
                                       std::to_string(length) + " exceeds maximum " +
                                       std::to_string(spec.length_max));
      }
      pos += prefix;
    }
    if (size - pos < length) {
      return Status::InvalidArgument("message truncated: " + FieldLabel(f, spec) + " needs " +
                                     std::to_string(length) + " bytes at offset " +
                                     std::to_string(pos) + ", " + std::to_string(size - pos) +
                                     " bytes left");
    }
    if (!ContentOk(spec.type, in + pos, length)) {
      NARAE_RETURN_IF_ERROR(CheckContent(f, spec, in + pos, length));
    }
    Message::Slot& slot = message.slots_[f];
    slot.offset = static_cast<uint32_t>(pos);
    slot.size = static_cast<uint32_t>(length);
    live_bytes += length;
    pos += length;
    last_field = f;
  }
  if (pos != size) {
    return Status::InvalidArgument(
        std::to_string(size - pos) + " trailing bytes after the last field (" +
        std::to_string(last_field) + ") at offset " + std::to_string(pos));
  }
  message.present_ = data_bits;
  message.live_bytes_ = live_bytes;
  message.unpacked_ = &table == &kIso87Table;
  return message;
}

namespace {

// Checks a message for Pack() and returns its packed size (MTI, bitmaps,
// fields with their prefixes) and its bitmaps (field 1 set when a field
// 65..128 is present).
Result<size_t> PackedSize(const Message& message, const FieldTable& table,
                          std::array<uint64_t, 2>* bits_out) {
  const std::string& mti = message.mti();
  if (mti.size() != kMtiBytes || !AllDigits(mti)) {
    return Status::InvalidArgument("bad MTI '" + mti + "': must be 4 ASCII digits");
  }
  if (message.Has(1)) {
    return Status::InvalidArgument(
        "field 1 (secondary bitmap) must not be set: Pack adds it when a field 65..128 is present");
  }
  std::array<uint64_t, 2> bits{0, 0};
  size_t total = kMtiBytes + kBitmapBytes;
  Status bad;
  message.ForEachField([&](int f, std::string_view value) {
    if (!bad.ok()) return;
    const FieldSpec& spec = table[f];
    const auto* data = reinterpret_cast<const uint8_t*>(value.data());
    const bool length_ok = spec.length_format == LF::kFixed ? value.size() == spec.length_max
                                                            : value.size() <= spec.length_max;
    if (spec.type == FT::kNone) {
      bad = Status::InvalidArgument("field " + std::to_string(f) + " is set but has no spec");
    } else if (!length_ok) {
      bad = CheckLength(f, spec, value.size());
    } else if (!ContentOk(spec.type, data, value.size())) {
      bad = CheckContent(f, spec, data, value.size());
    }
    total += PrefixDigits(spec.length_format) + value.size();
    bits[(f - 1) / 64] |= uint64_t{1} << (63 - (f - 1) % 64);
  });
  if (!bad.ok()) return bad;
  if (bits[1] != 0) {
    bits[0] |= uint64_t{1} << 63;
    total += kBitmapBytes;
  }
  if (total > kMessageBytesMax) {
    return Status::InvalidArgument("message too long: " + std::to_string(total) +
                                   " bytes, at most " + std::to_string(kMessageBytesMax));
  }
  *bits_out = bits;
  return total;
}

// Writes the packed body, exactly PackedSize() bytes, at `p`.
// REQUIRES: PackedSize(message, table, &bits) succeeded.
void WriteBody(const Message& message, const FieldTable& table, const std::array<uint64_t, 2>& bits,
               uint8_t* p, size_t total) {
  uint8_t* const start = p;
  std::memcpy(p, message.mti().data(), kMtiBytes);
  p += kMtiBytes;
  StoreBigEndian64(bits[0], p);
  p += kBitmapBytes;
  if (bits[1] != 0) {
    StoreBigEndian64(bits[1], p);
    p += kBitmapBytes;
  }
  message.ForEachField([&](int f, std::string_view value) {
    const FieldSpec& spec = table[f];
    size_t n = value.size();
    switch (spec.length_format) {
      case LF::kFixed:
        break;
      case LF::kLllvar:
        *p++ = static_cast<uint8_t>('0' + n / 100);
        [[fallthrough]];
      case LF::kLlvar:
        *p++ = static_cast<uint8_t>('0' + n / 10 % 10);
        *p++ = static_cast<uint8_t>('0' + n % 10);
        break;
    }
    if (n != 0) std::memcpy(p, value.data(), n);
    p += n;
  });
  NARAE_CHECK(p == start + total);
}

// Pack() into a buffer that starts with `header_bytes` (0, or 2 for the
// frame header, written here): one allocation and one copy of each field.
Result<std::vector<uint8_t>> PackWithHeader(const Message& message, const FieldTable& table,
                                            size_t header_bytes) {
  NARAE_CHECK(header_bytes == 0 || header_bytes == kFrameHeaderBytes);
  std::array<uint64_t, 2> bits{};
  Result<size_t> total = PackedSize(message, table, &bits);
  if (!total.ok()) return total.status();
  std::vector<uint8_t> out(header_bytes + *total);
  uint8_t* p = out.data();
  if (header_bytes != 0) {
    *p++ = static_cast<uint8_t>(*total >> 8);
    *p++ = static_cast<uint8_t>(*total & 0xFF);
  }
  WriteBody(message, table, bits, p, *total);
  return out;
}

}  // namespace

Result<std::vector<uint8_t>> Pack(const Message& message, const FieldTable& table) {
  return PackWithHeader(message, table, 0);
}

Status PackAppend(const Message& message, std::string* out, const FieldTable& table) {
  NARAE_CHECK(out != nullptr);
  std::array<uint64_t, 2> bits{};
  Result<size_t> total = PackedSize(message, table, &bits);
  if (!total.ok()) return total.status();
  const size_t start = out->size();
  out->resize(start + *total);
  WriteBody(message, table, bits, reinterpret_cast<uint8_t*>(out->data() + start), *total);
  return Status::Ok();
}

// ---------------------------------------------------------------------------
// Framing

Result<size_t> ReadFrameLength(std::span<const uint8_t> header) {
  if (header.size() < kFrameHeaderBytes) {
    return Status::InvalidArgument("frame header too short: " + std::to_string(header.size()) +
                                   " bytes, 2 needed");
  }
  return static_cast<size_t>((size_t{header[0]} << 8) | header[1]);
}

Result<std::vector<uint8_t>> Frame(std::span<const uint8_t> body) {
  if (body.size() > kMessageBytesMax) {
    return Status::InvalidArgument("message too long to frame: " + std::to_string(body.size()) +
                                   " bytes, at most " + std::to_string(kMessageBytesMax));
  }
  std::vector<uint8_t> out(kFrameHeaderBytes + body.size());
  out[0] = static_cast<uint8_t>(body.size() >> 8);
  out[1] = static_cast<uint8_t>(body.size() & 0xFF);
  if (!body.empty()) std::memcpy(out.data() + kFrameHeaderBytes, body.data(), body.size());
  return out;
}

Result<std::span<const uint8_t>> Unframe(std::span<const uint8_t> frame) {
  Result<size_t> length = ReadFrameLength(frame);
  if (!length.ok()) return length.status();
  size_t rest = frame.size() - kFrameHeaderBytes;
  if (*length != rest) {
    return Status::InvalidArgument("frame header announces " + std::to_string(*length) +
                                   " bytes but " + std::to_string(rest) + " follow");
  }
  return frame.subspan(kFrameHeaderBytes);
}

Result<std::vector<uint8_t>> PackFramed(const Message& message) {
  // The body is at most kMessageBytesMax (checked by the packer), so the
  // header always holds its length.
  return PackWithHeader(message, Iso87Table(), kFrameHeaderBytes);
}

// ---------------------------------------------------------------------------
// MTIs and response codes

Result<std::string> ResponseMti(std::string_view request_mti) {
  struct Pair {
    std::string_view request;
    std::string_view response;
  };
  static constexpr Pair kPairs[] = {
      {"0100", "0110"}, {"0200", "0210"}, {"0220", "0230"}, {"0221", "0230"}, {"0400", "0410"},
      {"0401", "0410"}, {"0420", "0430"}, {"0421", "0430"}, {"0800", "0810"},
  };
  for (const Pair& pair : kPairs) {
    if (pair.request == request_mti) return std::string(pair.response);
  }
  return Status::InvalidArgument("no response MTI for MTI '" + std::string(request_mti) + "'");
}

const std::array<ResponseCode, kResponseCodeCount> kAllResponseCodes = {
    ResponseCode::kApproved,
    ResponseCode::kDoNotHonour,
    ResponseCode::kInvalidTransaction,
    ResponseCode::kInvalidAmount,
    ResponseCode::kInvalidCardNumber,
    ResponseCode::kUnableToLocateOriginal,
    ResponseCode::kFormatError,
    ResponseCode::kLostCard,
    ResponseCode::kStolenCard,
    ResponseCode::kInsufficientFunds,
    ResponseCode::kExpiredCard,
    ResponseCode::kIncorrectPin,
    ResponseCode::kNotPermittedToCardholder,
    ResponseCode::kNotPermittedToTerminal,
    ResponseCode::kExceedsWithdrawalLimit,
    ResponseCode::kRestrictedCard,
    ResponseCode::kExceedsFrequencyLimit,
    ResponseCode::kPinTriesExceeded,
    ResponseCode::kIssuerUnavailable,
    ResponseCode::kDuplicateTransmission,
    ResponseCode::kSystemMalfunction,
};

std::string_view ResponseCodeText(ResponseCode code) {
  static constexpr std::array<std::array<char, 2>, 100> kDigits = [] {
    std::array<std::array<char, 2>, 100> d{};
    for (int i = 0; i < 100; ++i) {
      d[i] = {static_cast<char>('0' + i / 10), static_cast<char>('0' + i % 10)};
    }
    return d;
  }();
  const auto& d = kDigits[static_cast<uint8_t>(code) % 100];
  return std::string_view(d.data(), 2);
}

std::string_view ResponseCodeMeaning(ResponseCode code) {
  switch (code) {
    case ResponseCode::kApproved:
      return "approved";
    case ResponseCode::kDoNotHonour:
      return "do not honour";
    case ResponseCode::kInvalidTransaction:
      return "invalid transaction";
    case ResponseCode::kInvalidAmount:
      return "invalid amount";
    case ResponseCode::kInvalidCardNumber:
      return "invalid card number";
    case ResponseCode::kUnableToLocateOriginal:
      return "unable to locate original transaction";
    case ResponseCode::kFormatError:
      return "format error";
    case ResponseCode::kLostCard:
      return "lost card, pick up";
    case ResponseCode::kStolenCard:
      return "stolen card, pick up";
    case ResponseCode::kInsufficientFunds:
      return "insufficient funds";
    case ResponseCode::kExpiredCard:
      return "expired card";
    case ResponseCode::kIncorrectPin:
      return "incorrect PIN";
    case ResponseCode::kNotPermittedToCardholder:
      return "transaction not permitted to cardholder";
    case ResponseCode::kNotPermittedToTerminal:
      return "transaction not permitted to terminal";
    case ResponseCode::kExceedsWithdrawalLimit:
      return "exceeds withdrawal amount limit";
    case ResponseCode::kRestrictedCard:
      return "restricted card";
    case ResponseCode::kExceedsFrequencyLimit:
      return "exceeds withdrawal frequency limit";
    case ResponseCode::kPinTriesExceeded:
      return "allowable number of PIN tries exceeded";
    case ResponseCode::kIssuerUnavailable:
      return "issuer or switch inoperative";
    case ResponseCode::kDuplicateTransmission:
      return "duplicate transmission";
    case ResponseCode::kSystemMalfunction:
      return "system malfunction";
  }
  return "unknown response code";
}

Result<ResponseCode> ParseResponseCode(std::string_view field39) {
  if (field39.size() != 2 || !AllDigits(field39)) {
    return Status::InvalidArgument("response code '" + std::string(field39) +
                                   "' is not 2 ASCII digits");
  }
  int value = (field39[0] - '0') * 10 + (field39[1] - '0');
  for (ResponseCode code : kAllResponseCodes) {
    if (static_cast<int>(code) == value) return code;
  }
  return Status::InvalidArgument("response code '" + std::string(field39) +
                                 "' is not one Narae knows");
}

// ---------------------------------------------------------------------------
// Amounts, PANs

Result<uint64_t> ParseDigits(std::string_view digits) {
  if (digits.empty() || digits.size() > 19) {
    return Status::InvalidArgument("number must have 1 to 19 digits, got " +
                                   std::to_string(digits.size()));
  }
  uint64_t value = 0;
  for (char ch : digits) {
    if (!IsDigit(static_cast<uint8_t>(ch))) {
      return Status::InvalidArgument("non-digit byte " + HexByte(static_cast<uint8_t>(ch)) +
                                     " in a number");
    }
    value = value * 10 + static_cast<uint64_t>(ch - '0');  // 19 digits < 2^64: no overflow
  }
  return value;
}

Result<uint64_t> ParseAmount(std::string_view field) {
  if (field.size() != 12) {
    return Status::InvalidArgument("amount must be 12 digits, got " + std::to_string(field.size()) +
                                   " characters");
  }
  return ParseDigits(field);
}

Result<std::string> FormatDigits(uint64_t value, size_t width) {
  if (width == 0 || width > 19) {
    return Status::InvalidArgument("digit width must be 1..19, got " + std::to_string(width));
  }
  std::string out(width, '0');
  uint64_t rest = value;
  for (size_t i = width; i > 0 && rest != 0; --i) {
    out[i - 1] = static_cast<char>('0' + rest % 10);
    rest /= 10;
  }
  if (rest != 0) {
    return Status::InvalidArgument("value " + std::to_string(value) + " does not fit in " +
                                   std::to_string(width) + " digits");
  }
  return out;
}

Result<std::string> FormatAmount(uint64_t amount_minor) { return FormatDigits(amount_minor, 12); }

std::string MaskPan(std::string_view pan) {
  std::string out(pan.size(), '*');
  size_t keep_head = pan.size() >= 13 ? 6 : 0;
  size_t keep_tail = pan.size() >= 8 ? 4 : 0;
  for (size_t i = 0; i < keep_head; ++i) out[i] = pan[i];
  for (size_t i = pan.size() - keep_tail; i < pan.size(); ++i) out[i] = pan[i];
  return out;
}

// ---------------------------------------------------------------------------
// Field 90

Result<OriginalData> ParseOriginalData(std::string_view field90) {
  if (field90.size() != 42 || !AllDigits(field90)) {
    return Status::InvalidArgument("field 90 (original data elements) must be 42 digits");
  }
  OriginalData data;
  data.mti = std::string(field90.substr(0, 4));
  data.stan = std::string(field90.substr(4, 6));
  data.transmission_datetime = std::string(field90.substr(10, 10));
  data.acquirer_id = std::string(field90.substr(20, 11));
  data.forwarder_id = std::string(field90.substr(31, 11));
  return data;
}

Result<std::string> FormatOriginalData(const OriginalData& data) {
  struct Part {
    const std::string& value;
    size_t width;
    const char* name;
  };
  const Part parts[] = {{data.mti, 4, "MTI"},
                        {data.stan, 6, "STAN"},
                        {data.transmission_datetime, 10, "transmission date-time"},
                        {data.acquirer_id, 11, "acquirer id"},
                        {data.forwarder_id, 11, "forwarder id"}};
  std::string out;
  out.reserve(42);
  for (const Part& part : parts) {
    if (part.value.size() != part.width || !AllDigits(part.value)) {
      return Status::InvalidArgument(std::string("field 90: ") + part.name + " must be " +
                                     std::to_string(part.width) + " digits");
    }
    out += part.value;
  }
  return out;
}

// ---------------------------------------------------------------------------
// Field 62

Result<SimTokenData> ParseSimToken(std::string_view field62) {
  if (field62.size() != kSimTokenFieldBytes) {
    return Status::InvalidArgument("field 62 (SIM token data) must be 54 characters, got " +
                                   std::to_string(field62.size()));
  }
  if (field62.substr(0, 2) != "01") {
    return Status::InvalidArgument("field 62: unsupported SIM token layout version '" +
                                   std::string(field62.substr(0, 2)) + "'");
  }
  SimTokenData token;
  token.version = 1;
  std::string_view id = field62.substr(2, kSimTokenIdDigits);
  if (!AllDigits(id)) return Status::InvalidArgument("field 62: token id must be 16 digits");
  token.token_id = std::string(id);
  Result<uint64_t> counter = ParseDigits(field62.substr(18, 10));
  if (!counter.ok()) return Status::InvalidArgument("field 62: counter must be 10 digits");
  token.counter = *counter;
  std::string_view hex = field62.substr(28, 2 * kSimCryptogramBytes);
  for (size_t i = 0; i < kSimCryptogramBytes; ++i) {
    uint8_t byte = 0;
    for (size_t j = 0; j < 2; ++j) {
      char ch = hex[2 * i + j];
      uint8_t nibble = 0;
      if (ch >= '0' && ch <= '9') {
        nibble = static_cast<uint8_t>(ch - '0');
      } else if (ch >= 'A' && ch <= 'F') {
        nibble = static_cast<uint8_t>(ch - 'A' + 10);
      } else {
        return Status::InvalidArgument("field 62: cryptogram must be 16 uppercase hex digits");
      }
      byte = static_cast<uint8_t>(byte << 4 | nibble);
    }
    token.cryptogram[i] = byte;
  }
  Result<uint64_t> time = ParseDigits(field62.substr(44, 10));
  if (!time.ok()) return Status::InvalidArgument("field 62: time must be 10 digits");
  token.time_unix_s = *time;
  return token;
}

Result<std::string> FormatSimToken(const SimTokenData& token) {
  if (token.version != 1) {
    return Status::InvalidArgument("field 62: only layout version 1 is defined");
  }
  if (token.token_id.size() != kSimTokenIdDigits || !AllDigits(token.token_id)) {
    return Status::InvalidArgument("field 62: token id must be 16 digits");
  }
  Result<std::string> counter = FormatDigits(token.counter, 10);
  if (!counter.ok()) return Status::InvalidArgument("field 62: counter exceeds 10 digits");
  Result<std::string> time = FormatDigits(token.time_unix_s, 10);
  if (!time.ok()) return Status::InvalidArgument("field 62: time exceeds 10 digits");
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(kSimTokenFieldBytes);
  out += "01";
  out += token.token_id;
  out += *counter;
  for (uint8_t b : token.cryptogram) {
    out += kHex[b >> 4];
    out += kHex[b & 0xF];
  }
  out += *time;
  NARAE_CHECK(out.size() == kSimTokenFieldBytes);
  return out;
}

// ---------------------------------------------------------------------------
// Field 54

Result<std::vector<AdditionalAmount>> ParseAdditionalAmounts(std::string_view field54) {
  if (field54.empty() || field54.size() % kAdditionalAmountBytes != 0 ||
      field54.size() > kAdditionalAmountsMax * kAdditionalAmountBytes) {
    return Status::InvalidArgument(
        "field 54 (additional amounts) must be 1 to 6 blocks of 20 characters, got " +
        std::to_string(field54.size()));
  }
  std::vector<AdditionalAmount> amounts;
  amounts.reserve(field54.size() / kAdditionalAmountBytes);
  for (size_t at = 0; at < field54.size(); at += kAdditionalAmountBytes) {
    std::string_view block = field54.substr(at, kAdditionalAmountBytes);
    std::string_view sign = block.substr(7, 1);
    if (!AllDigits(block.substr(0, 7)) || !AllDigits(block.substr(8)) ||
        (sign != "C" && sign != "D")) {
      return Status::InvalidArgument("field 54: block " +
                                     std::to_string(at / kAdditionalAmountBytes + 1) +
                                     " is not n2 n2 n3 C/D n12");
    }
    AdditionalAmount amount;
    amount.account_type = static_cast<uint8_t>(*ParseDigits(block.substr(0, 2)));
    amount.amount_type = static_cast<uint8_t>(*ParseDigits(block.substr(2, 2)));
    amount.currency = static_cast<uint16_t>(*ParseDigits(block.substr(4, 3)));
    amount.negative = sign == "D";
    amount.amount_minor = *ParseDigits(block.substr(8, 12));
    amounts.push_back(amount);
  }
  return amounts;
}

Result<std::string> FormatAdditionalAmounts(std::span<const AdditionalAmount> amounts) {
  if (amounts.empty() || amounts.size() > kAdditionalAmountsMax) {
    return Status::InvalidArgument("field 54: 1 to 6 additional amounts needed, got " +
                                   std::to_string(amounts.size()));
  }
  // Written in place (the switch formats one or two per approval): no
  // string per part.
  std::string out(amounts.size() * kAdditionalAmountBytes, '0');
  char* p = out.data();
  auto digits = [&p](uint64_t v, size_t width) {
    for (size_t i = width; i > 0; --i) {
      p[i - 1] = static_cast<char>('0' + v % 10);
      v /= 10;
    }
    p += width;
    return v == 0;  // fitted
  };
  for (const AdditionalAmount& amount : amounts) {
    bool fits = digits(amount.account_type, 2);
    fits = digits(amount.amount_type, 2) && fits;
    fits = digits(amount.currency, 3) && fits;
    *p++ = amount.negative ? 'D' : 'C';
    fits = digits(amount.amount_minor, 12) && fits;
    if (!fits) {
      return Status::InvalidArgument(
          "field 54: account type, amount type, currency or amount "
          "out of range");
    }
  }
  NARAE_CHECK(p == out.data() + out.size());
  return out;
}

}  // namespace narae::switching
