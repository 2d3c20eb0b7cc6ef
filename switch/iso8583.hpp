// ISO 8583:1987 wire codec of the Narae authorization switch (no networking).
//
// Wire format (docs/iso8583.md is the reference a client is written from):
//   [2-byte big-endian length] [MTI: 4 ASCII digits] [primary bitmap: 8 raw bytes]
//   [secondary bitmap: 8 raw bytes, only when bit 1 is set] [fields in ascending order]
// Numeric and text fields are ASCII with ASCII LL/LLL length prefixes; binary
// fields (52, 64, 65, 96, 128 fixed; 55 LLLVAR) are raw bytes. Field lengths
// follow jPOS's ISO87APackager (ASCII 1987) so a jPOS client with a binary
// bitmap and binary 52/55/64/128 interoperates (see the doc for the packager).
//
// The codec works on the message body; the server reads the 2-byte header,
// checks it with ReadFrameLength() and hands the body to Unpack().
//
// Validation is strict: Unpack() accepts only what Pack() would produce for
// the same Message, so Pack(Unpack(x)) == x byte for byte. Every failure is a
// Status (InvalidArgument) with a message naming the field and the problem;
// no exceptions, no unbounded loops (at most 128 fields, each at most 999 bytes).
//
// Thread safety: Message is a plain value; the free functions are pure and
// may be called from any thread. The field table is immutable.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "ledger/status.hpp"

namespace narae::switching {

// ---------------------------------------------------------------------------
// Limits of the format.
inline constexpr int kFieldNumberMax = 128;  // fields are numbered 1..128
inline constexpr size_t kFrameHeaderBytes = 2;
inline constexpr size_t kMtiBytes = 4;
inline constexpr size_t kBitmapBytes = 8;
inline constexpr size_t kMessageBytesMin = kMtiBytes + kBitmapBytes;  // MTI + primary bitmap
inline constexpr size_t kMessageBytesMax = 65535;  // what a 2-byte header can announce

// ---------------------------------------------------------------------------
// Field table.

// Content type of a field, ISO 8583 notation.
enum class FieldType : uint8_t {
  kNone,  // no spec: a message carrying this field is rejected
  kN,     // numeric: ASCII digits '0'..'9'
  kAn,    // alphanumeric: letters, digits and space (space pads fixed fields)
  kAns,   // alphanumeric and special: printable ASCII 0x20..0x7E
  kZ,     // track 2/3 data: digits, '=' and 'D' separators
  kXn,    // 'C' (credit) or 'D' (debit) followed by digits
  kB,     // binary: raw bytes, any value
};

enum class LengthFormat : uint8_t {
  kFixed,   // exactly length_max characters (bytes for kB)
  kLlvar,   // 2 ASCII digits giving the length, then the data
  kLllvar,  // 3 ASCII digits giving the length, then the data
};

struct FieldSpec {
  FieldType type = FieldType::kNone;
  LengthFormat length_format = LengthFormat::kFixed;
  uint16_t length_max = 0;  // fixed length, or maximum of a variable field
  const char* name = "";    // for error messages and the doc; never null
};

// Index = field number; entry 0 describes the MTI and entry 1 the secondary
// bitmap (both are handled by the codec itself, never as ordinary fields).
using FieldTable = std::array<FieldSpec, kFieldNumberMax + 1>;

// The ISO 8583:1987 table Narae uses: all 128 fields, lengths as in jPOS's
// ISO87APackager, with 52/64/65/96/128 raw binary and 55 LLLVAR raw binary.
const FieldTable& Iso87Table();

// ---------------------------------------------------------------------------
// Message: an MTI and up to 127 data fields (2..128). Values are stored as
// the field's content without its length prefix (raw bytes for binary
// fields). Field 1 is not a data field: Pack() sets it when a field 65..128
// is present; setting it by hand makes Pack() fail.
//
// Storage is one byte buffer plus a slot per field, so Unpack() costs one
// allocation and copying a Message is cheap.
class Message {
 public:
  Message() = default;
  explicit Message(std::string_view mti) : mti_(mti) {}

  const std::string& mti() const { return mti_; }
  void set_mti(std::string_view mti) {
    mti_.assign(mti.data(), mti.size());
    unpacked_ = false;
  }

  // REQUIRES: 1 <= field <= 128 (checked: a wrong number is a programmer error).
  bool Has(int field) const {
    CheckFieldNumber(field);
    return (present_[(field - 1) / 64] & FieldBit(field)) != 0;
  }
  // The value, or an empty view when absent (use Has() or Find() to tell).
  std::string_view Get(int field) const {
    if (!Has(field)) return {};
    return std::string_view(data_.data() + slots_[field].offset, slots_[field].size);
  }
  std::optional<std::string_view> Find(int field) const {
    if (!Has(field)) return std::nullopt;
    return std::string_view(data_.data() + slots_[field].offset, slots_[field].size);
  }
  // Calls fn(field, value) for every present field in ascending order (wire
  // order), at most 128 calls.
  template <typename Fn>
  void ForEachField(Fn&& fn) const {
    for (int word = 0; word < 2; ++word) {
      uint64_t w = present_[word];
      while (w != 0) {
        const int lead = __builtin_clzll(w);  // bit 63 is the word's first field
        w &= ~(uint64_t{1} << (63 - lead));
        const int field = word * 64 + lead + 1;
        fn(field, std::string_view(data_.data() + slots_[field].offset, slots_[field].size));
      }
    }
  }
  // The bytes Pack(*this) returns, without packing: the body Unpack() read
  // with Iso87Table(), while no field or MTI has been set or cleared since
  // (nullopt otherwise, for a built message, and for another table). Valid
  // until the message changes. A request's MAC is checked over these bytes.
  std::optional<std::span<const uint8_t>> PackedIfUnchanged() const;
  // Room for `bytes` of field values without growing (a builder's hint).
  void Reserve(size_t bytes) { data_.reserve(bytes); }
  void Set(int field, std::string_view value);
  void SetBytes(int field, std::span<const uint8_t> value);
  void Clear(int field);

  // Number of fields present (field 1 counts if it was set by hand).
  int FieldCount() const;
  // The lowest present field number greater than `after`, or 0 when none.
  int NextField(int after) const;

  // Same MTI and the same fields with the same values.
  bool operator==(const Message& other) const;

 private:
  struct Slot {
    uint32_t offset = 0;
    uint32_t size = 0;
  };
  friend Result<Message> Unpack(std::span<const uint8_t> body, const FieldTable& table);
  static void CheckFieldNumber(int field) {
    if (field < 1 || field > kFieldNumberMax) FieldNumberOutOfRange(field);
  }
  [[noreturn]] static void FieldNumberOutOfRange(int field);
  static uint64_t FieldBit(int field) { return uint64_t{1} << (63 - (field - 1) % 64); }
  void Compact();

  std::string mti_;
  // The bitmaps as on the wire: word (field - 1) / 64, bit FieldBit(field).
  std::array<uint64_t, 2> present_{};
  std::array<Slot, kFieldNumberMax + 1> slots_{};
  std::string data_;       // field values, referenced by slots_
  size_t live_bytes_ = 0;  // bytes of data_ referenced by present fields
  // data_ is the body Unpack() read with Iso87Table(), unchanged since:
  // Pack(*this) would return exactly data_.
  bool unpacked_ = false;
};

// Parses a message body (no length header). Fails on: fewer bytes than MTI +
// bitmap, a non-digit MTI, a secondary bitmap announcing nothing, a field
// without a spec, data ending before a field the bitmap announces, a bad or
// too large length prefix, a character not allowed by the field's type, and
// bytes left after the last field.
Result<Message> Unpack(std::span<const uint8_t> body, const FieldTable& table = Iso87Table());

// Encodes a message body (no length header). Fails on: an MTI that is not 4
// digits, field 1 set by hand, a field without a spec, a fixed field of the
// wrong length, a variable field longer than its maximum, a character not
// allowed by the field's type, or a body longer than kMessageBytesMax.
Result<std::vector<uint8_t>> Pack(const Message& message, const FieldTable& table = Iso87Table());
// Pack() appended to `out` (a record's buffer, without an intermediate
// vector). On failure `out` is unchanged. REQUIRES: out != nullptr.
[[nodiscard]] Status PackAppend(const Message& message, std::string* out,
                                const FieldTable& table = Iso87Table());

// ---------------------------------------------------------------------------
// Framing: 2-byte big-endian length header, then the body.

// The length announced by a header. REQUIRES nothing: fails when fewer than
// 2 bytes are given. 0 is returned as is (a keep-alive for many hosts).
Result<size_t> ReadFrameLength(std::span<const uint8_t> header);
// Header + body. Fails when the body is longer than kMessageBytesMax.
Result<std::vector<uint8_t>> Frame(std::span<const uint8_t> body);
// The body of one complete frame. Fails when the header is missing or the
// announced length differs from the bytes that follow it.
Result<std::span<const uint8_t>> Unframe(std::span<const uint8_t> frame);
// Pack() then Frame().
Result<std::vector<uint8_t>> PackFramed(const Message& message);

// ---------------------------------------------------------------------------
// MTIs and response codes.

// 0100->0110, 0200->0210, 0220/0221->0230, 0400/0401->0410,
// 0420/0421->0430, 0800->0810. Fails for any other MTI.
Result<std::string> ResponseMti(std::string_view request_mti);

// Field 39 values Narae sends. The enumerator's value is the code's number.
enum class ResponseCode : uint8_t {
  kApproved = 0,
  kDoNotHonour = 5,
  kInvalidTransaction = 12,
  kInvalidAmount = 13,
  kInvalidCardNumber = 14,
  kUnableToLocateOriginal = 25,
  kFormatError = 30,
  kLostCard = 41,
  kStolenCard = 43,
  kInsufficientFunds = 51,
  kExpiredCard = 54,
  kIncorrectPin = 55,
  kNotPermittedToCardholder = 57,
  kNotPermittedToTerminal = 58,
  kExceedsWithdrawalLimit = 61,
  kRestrictedCard = 62,
  kExceedsFrequencyLimit = 65,
  kPinTriesExceeded = 75,
  kIssuerUnavailable = 91,
  kDuplicateTransmission = 94,
  kSystemMalfunction = 96,
};
inline constexpr int kResponseCodeCount = 21;
extern const std::array<ResponseCode, kResponseCodeCount> kAllResponseCodes;

// The two ASCII digits for field 39, e.g. "05".
std::string_view ResponseCodeText(ResponseCode code);
// A short English meaning, e.g. "do not honour".
std::string_view ResponseCodeMeaning(ResponseCode code);
// Fails for a value that is not one of the codes above.
Result<ResponseCode> ParseResponseCode(std::string_view field39);

// ---------------------------------------------------------------------------
// Amounts, PANs.

// Digits (1..19) to an integer; fails on an empty string, a non-digit or
// more than 19 digits. Used for amounts, STANs, counters.
Result<uint64_t> ParseDigits(std::string_view digits);
// Field 4 style amount: exactly 12 digits, minor units of the field 49 currency.
Result<uint64_t> ParseAmount(std::string_view field);
// 12 zero-padded digits; fails when amount_minor > 999'999'999'999.
Result<std::string> FormatAmount(uint64_t amount_minor);
// `value` as exactly `width` zero-padded digits (width 1..19); fails when it
// does not fit. For STANs (6), MCC (4) and other fixed numeric fields.
Result<std::string> FormatDigits(uint64_t value, size_t width);

// For logs: first 6 and last 4 characters kept, the rest '*'. A PAN shorter
// than 13 keeps only its last 4 (or nothing when shorter than 8).
std::string MaskPan(std::string_view pan);

// ---------------------------------------------------------------------------
// Field 90, original data elements (n42), sent in reversals (0400/0420).
struct OriginalData {
  std::string mti;                    // n4, the original request's MTI
  std::string stan;                   // n6, its field 11
  std::string transmission_datetime;  // n10, its field 7 (MMDDhhmmss)
  std::string acquirer_id;            // n11, its field 32, zero-padded on the left
  std::string forwarder_id;           // n11, its field 33, zero-padded on the left
  bool operator==(const OriginalData&) const = default;
};
Result<OriginalData> ParseOriginalData(std::string_view field90);
Result<std::string> FormatOriginalData(const OriginalData& data);

// ---------------------------------------------------------------------------
// Field 62, Narae SIM token data, layout version 01 (54 ASCII characters):
//   version n2 "01" | token_id n16 | counter n10 | cryptogram 16 uppercase hex
//   (8 bytes) | time n10 (Unix seconds, UTC, when the applet produced it)
inline constexpr size_t kSimTokenFieldBytes = 54;
inline constexpr size_t kSimTokenIdDigits = 16;
inline constexpr size_t kSimCryptogramBytes = 8;
struct SimTokenData {
  uint8_t version = 1;
  std::string token_id;                                   // 16 digits
  uint64_t counter = 0;                                   // <= 9'999'999'999
  std::array<uint8_t, kSimCryptogramBytes> cryptogram{};  // verified by crypto/
  uint64_t time_unix_s = 0;                               // <= 9'999'999'999
  bool operator==(const SimTokenData&) const = default;
};
Result<SimTokenData> ParseSimToken(std::string_view field62);
Result<std::string> FormatSimToken(const SimTokenData& token);

// ---------------------------------------------------------------------------
// Field 54, additional amounts (balances in 0110/0210): 1..6 blocks of 20
// characters: account type n2 | amount type n2 | currency n3 | 'C' or 'D' | amount n12.
inline constexpr size_t kAdditionalAmountBytes = 20;
inline constexpr size_t kAdditionalAmountsMax = 6;
inline constexpr uint8_t kAmountTypeLedgerBalance = 1;
inline constexpr uint8_t kAmountTypeAvailableBalance = 2;
struct AdditionalAmount {
  uint8_t account_type = 0;   // 0..99: 00 default, 10 savings, 20 checking, 30 credit
  uint8_t amount_type = 0;    // 0..99: 01 ledger balance, 02 available balance
  uint16_t currency = 0;      // ISO 4217 numeric, 0..999 (408 KPW, 840 USD, ...)
  bool negative = false;      // 'D' when true, 'C' otherwise
  uint64_t amount_minor = 0;  // <= 999'999'999'999
  bool operator==(const AdditionalAmount&) const = default;
};
Result<std::vector<AdditionalAmount>> ParseAdditionalAmounts(std::string_view field54);
Result<std::string> FormatAdditionalAmounts(std::span<const AdditionalAmount> amounts);

}  // namespace narae::switching
