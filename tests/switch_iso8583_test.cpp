// Tests of the ISO 8583:1987 codec (switch/iso8583.hpp).
#include "switch/iso8583.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <optional>
#include <random>
#include <span>
#include <string>
#include <vector>

namespace narae::switching {
namespace {

#define ASSERT_RESULT_OK(expr)                      \
  do {                                              \
    const auto& _r = (expr);                        \
    ASSERT_TRUE(_r.ok()) << _r.status().ToString(); \
  } while (0)

using Bytes = std::vector<uint8_t>;

Bytes B(std::string_view s) { return Bytes(s.begin(), s.end()); }
void Append(Bytes& out, std::string_view s) { out.insert(out.end(), s.begin(), s.end()); }
void Append(Bytes& out, std::initializer_list<uint8_t> bytes) {
  out.insert(out.end(), bytes.begin(), bytes.end());
}

std::string Hex(const Bytes& bytes) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (uint8_t b : bytes) {
    out += kHex[b >> 4];
    out += kHex[b & 0xF];
  }
  return out;
}

const std::string kPin = std::string("\x12\x34\x56\x78\x9A\xBC\xDE\xF0", 8);
const std::string kMac = std::string("\x00\x11\x22\x33\x44\x55\x66\x77", 8);
const std::string kIcc =
    std::string("\x9F\x02\x06\x00\x00\x00\x01\x23\x45\x5F\x2A\x02\x04\x08", 14);
const std::string kSimToken =
    "01"
    "9410000000000017"
    "0000000042"
    "0011223344556677"
    "1767225600";

// The authorization request of the documented example (docs/iso8583.md).
Message Make0100() {
  Message m("0100");
  m.Set(2, "9410000000000017");
  m.Set(3, "000000");
  m.Set(4, "000000012345");
  m.Set(7, "0101120000");
  m.Set(11, "000001");
  m.Set(22, "071");
  m.Set(41, "TERM0001");
  m.Set(42, "OKRYU0000000001");
  m.Set(49, "408");
  m.Set(52, kPin);
  m.Set(55, kIcc);
  m.Set(62, kSimToken);
  return m;
}

Message Make0110() {
  Message m("0110");
  m.Set(2, "9410000000000017");
  m.Set(3, "000000");
  m.Set(4, "000000012345");
  m.Set(7, "0101120000");
  m.Set(11, "000001");
  m.Set(37, "000000000001");
  m.Set(38, "A1B2C3");
  m.Set(39, "00");
  m.Set(41, "TERM0001");
  m.Set(42, "OKRYU0000000001");
  m.Set(49, "408");
  m.Set(54, "0002408C000000987655");
  return m;
}

Message Make0200() {
  Message m("0200");
  m.Set(2, "9410000000000017");
  m.Set(3, "000000");
  m.Set(4, "000000050000");
  m.Set(7, "0101120001");
  m.Set(11, "000002");
  m.Set(12, "120001");
  m.Set(13, "0101");
  m.Set(14, "2812");
  m.Set(18, "5411");
  m.Set(22, "051");
  m.Set(35, "9410000000000017=28121011234500000000");
  m.Set(37, "000000000002");
  m.Set(41, "TERM0001");
  m.Set(42, "OKRYU0000000001");
  m.Set(43, "Okryu noodle shop       Pyongyang     KP");
  m.Set(48, "order=A-1234;delivery=van");
  m.Set(49, "840");
  m.Set(52, kPin);
  m.Set(55, kIcc);
  m.Set(64, kMac);
  return m;
}

Message Make0220() {
  Message m("0220");
  m.Set(2, "9410000000000017");
  m.Set(3, "000000");
  m.Set(4, "000000040000");
  m.Set(7, "0102090000");
  m.Set(11, "000003");
  m.Set(38, "A1B2C3");
  m.Set(41, "TERM0001");
  m.Set(42, "OKRYU0000000001");
  m.Set(49, "840");
  m.Set(90,
        "0100"
        "000001"
        "0101120000"
        "00000000408"
        "00000000000");
  return m;
}

Message Make0400() {
  Message m("0400");
  m.Set(2, "9410000000000017");
  m.Set(3, "000000");
  m.Set(4, "000000012345");
  m.Set(7, "0101120500");
  m.Set(11, "000004");
  m.Set(41, "TERM0001");
  m.Set(42, "OKRYU0000000001");
  m.Set(49, "408");
  m.Set(90,
        "0100"
        "000001"
        "0101120000"
        "00000000408"
        "00000000000");
  m.Set(95, "000000002345000000000000000000000000000000");
  m.Set(128, kMac);
  return m;
}

Message Make0420() {
  Message m = Make0400();
  m.set_mti("0420");
  m.Set(11, "000005");
  m.Set(39, "91");
  return m;
}

Message Make0800() {
  Message m("0800");
  m.Set(7, "0102030405");
  m.Set(11, "000001");
  m.Set(70, "301");
  return m;
}

void ExpectRoundTrip(const Message& m) {
  Result<Bytes> packed = Pack(m);
  ASSERT_RESULT_OK(packed);
  Result<Message> unpacked = Unpack(*packed);
  ASSERT_RESULT_OK(unpacked);
  EXPECT_TRUE(*unpacked == m) << "MTI " << m.mti();
  Result<Bytes> repacked = Pack(*unpacked);
  ASSERT_RESULT_OK(repacked);
  EXPECT_EQ(*repacked, *packed);
}

// Unpacks `bytes`, expects a failure whose message contains `needle`.
void ExpectUnpackError(const Bytes& bytes, std::string_view needle) {
  Result<Message> r = Unpack(bytes);
  ASSERT_FALSE(r.ok()) << "expected an error containing: " << needle;
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

void ExpectPackError(const Message& m, std::string_view needle,
                     const FieldTable& table = Iso87Table()) {
  Result<Bytes> r = Pack(m, table);
  ASSERT_FALSE(r.ok()) << "expected an error containing: " << needle;
  EXPECT_NE(r.status().message().find(needle), std::string::npos) << r.status().message();
}

// ---------------------------------------------------------------------------
// Round trips

TEST(Iso8583, RoundTripsEveryMessageType) {
  Message m0810 = Make0800();
  m0810.set_mti("0810");
  m0810.Set(39, "00");
  for (const Message& m : {Make0100(), Make0110(), Make0200(), Make0220(), Make0400(), Make0420(),
                           Make0800(), m0810}) {
    ExpectRoundTrip(m);
  }
}

TEST(Iso8583, RoundTripsEveryFieldOfTheTable) {
  // One message carrying every field 2..128 at its maximum length.
  Message m("0200");
  const FieldTable& table = Iso87Table();
  for (int f = 2; f <= kFieldNumberMax; ++f) {
    const FieldSpec& spec = table[f];
    std::string value(spec.length_max, '7');
    if (spec.type == FieldType::kXn) value[0] = 'D';
    if (spec.type == FieldType::kB) value.assign(spec.length_max, '\xFF');
    m.Set(f, value);
  }
  ExpectRoundTrip(m);
  EXPECT_EQ(m.FieldCount(), 127);
}

TEST(Iso8583, RoundTripsEmptyVariableFieldsAndNoFields) {
  Message m("0800");
  m.Set(48, "");
  m.Set(2, "");
  ExpectRoundTrip(m);
  ExpectRoundTrip(Message("0800"));
}

// ---------------------------------------------------------------------------
// Byte-exact encodings, built from the documented format

Bytes Expected0100() {
  Bytes b;
  Append(b, "0100");
  // Fields 2 3 4 7 | 11 | 22 | - | - | 41 42 | 49 52 55 | 62
  Append(b, {0x72, 0x20, 0x04, 0x00, 0x00, 0xC0, 0x92, 0x04});
  Append(b,
         "16"
         "9410000000000017");                                   // 2, LLVAR
  Append(b, "000000");                                          // 3
  Append(b, "000000012345");                                    // 4
  Append(b, "0101120000");                                      // 7
  Append(b, "000001");                                          // 11
  Append(b, "071");                                             // 22
  Append(b, "TERM0001");                                        // 41
  Append(b, "OKRYU0000000001");                                 // 42
  Append(b, "408");                                             // 49
  Append(b, {0x12, 0x34, 0x56, 0x78, 0x9A, 0xBC, 0xDE, 0xF0});  // 52, raw
  Append(b, "014");                                             // 55, LLL binary
  Append(b, {0x9F, 0x02, 0x06, 0x00, 0x00, 0x00, 0x01, 0x23, 0x45, 0x5F, 0x2A, 0x02, 0x04, 0x08});
  Append(b,
         "054"
         "01"
         "9410000000000017"
         "0000000042"
         "0011223344556677"
         "1767225600");  // 62
  return b;
}

TEST(Iso8583, PacksTheDocumentedRequestByteForByte) {
  Result<Bytes> packed = Pack(Make0100());
  ASSERT_RESULT_OK(packed);
  EXPECT_EQ(Hex(*packed), Hex(Expected0100()));
  Result<Message> unpacked = Unpack(Expected0100());
  ASSERT_RESULT_OK(unpacked);
  EXPECT_TRUE(*unpacked == Make0100());
}

TEST(Iso8583, DocumentedHexDumpsMatch) {
  // The same hex strings are printed in docs/iso8583.md ("Worked example").
  Result<Bytes> request = PackFramed(Make0100());
  ASSERT_RESULT_OK(request);
  EXPECT_EQ(Hex(*request),
            "00AF303130307220040000C092043136393431303030303030303030303031373030303030303030"
            "30303030303132333435303130313132303030303030303030313037315445524D303030314F4B52"
            "595530303030303030303031343038123456789ABCDEF03031349F02060000000123455F2A020408"
            "30353430313934313030303030303030303030313730303030303030303432303031313232333334"
            "3435353636373731373637323235363030");
  Result<Bytes> response = PackFramed(Make0110());
  ASSERT_RESULT_OK(response);
  EXPECT_EQ(Hex(*response),
            "008530313130722000000EC084003136393431303030303030303030303031373030303030303030"
            "30303030303132333435303130313132303030303030303030313030303030303030303030314131"
            "4232433330305445524D303030314F4B525955303030303030303030313430383032303030303234"
            "303843303030303030393837363535");
}

TEST(Iso8583, SecondaryBitmapIsAddedForFields65To128) {
  Result<Bytes> packed = Pack(Make0800());
  ASSERT_RESULT_OK(packed);
  Bytes expected;
  Append(expected, "0800");
  Append(expected, {0x82, 0x20, 0, 0, 0, 0, 0, 0});  // bit 1 (secondary), 7, 11
  Append(expected, {0x04, 0, 0, 0, 0, 0, 0, 0});     // bit 70
  Append(expected,
         "0102030405"
         "000001"
         "301");
  EXPECT_EQ(Hex(*packed), Hex(expected));

  Message primary_only("0800");
  primary_only.Set(7, "0102030405");
  Result<Bytes> small = Pack(primary_only);
  ASSERT_RESULT_OK(small);
  EXPECT_EQ(small->size(), 4u + 8u + 10u);
  EXPECT_EQ((*small)[4], 0x02);  // no bit 1

  Message only_128("0800");
  only_128.Set(128, kMac);
  Result<Bytes> last = Pack(only_128);
  ASSERT_RESULT_OK(last);
  EXPECT_EQ((*last)[4], 0x80);
  EXPECT_EQ((*last)[19], 0x01);
  ExpectRoundTrip(only_128);
}

// ---------------------------------------------------------------------------
// Errors, one test each

TEST(Iso8583Errors, TooShort) {
  ExpectUnpackError(Bytes{}, "message too short");
  ExpectUnpackError(B("0800"), "message too short");
  Bytes eleven = B("0800");
  Append(eleven, {0, 0, 0, 0, 0, 0, 0});
  ExpectUnpackError(eleven, "message too short: 11 bytes");
}

TEST(Iso8583Errors, BadMti) {
  Bytes b = Expected0100();
  b[2] = 'X';
  ExpectUnpackError(b, "bad MTI: byte 0x58 at offset 2");
  Message m = Make0100();
  m.set_mti("01A0");
  ExpectPackError(m, "bad MTI");
  m.set_mti("100");
  ExpectPackError(m, "bad MTI");
}

TEST(Iso8583Errors, BitmapAnnouncesFieldsBeyondTheData) {
  Bytes b = Expected0100();
  b.resize(b.size() - 10);  // field 62 cut short
  ExpectUnpackError(b, "message truncated: field 62");
  Bytes only_header = B("0100");
  Append(only_header, {0x72, 0x20, 0x04, 0x00, 0x00, 0xC0, 0x92, 0x04});
  ExpectUnpackError(only_header, "message truncated: field 2");
  Bytes fixed = B("0800");
  Append(fixed, {0x02, 0, 0, 0, 0, 0, 0, 0});
  Append(fixed, "01020304");  // field 7 needs 10
  ExpectUnpackError(fixed, "message truncated: field 7 (transmission date and time) needs 10");
}

TEST(Iso8583Errors, NonDigitInNumericField) {
  Bytes b = Expected0100();
  b[4 + 8 + 2 + 16 + 6 + 3] = 'x';  // inside field 4
  ExpectUnpackError(b, "field 4 (amount, transaction): byte 0x78 at position 3");
  Message m = Make0100();
  m.Set(11, "00 001");
  ExpectPackError(m, "field 11 (system trace audit number): byte 0x20");
  Message pan = Make0100();
  pan.Set(2, "94100000000000A7");
  ExpectPackError(pan, "field 2 (primary account number)");
}

TEST(Iso8583Errors, LengthPrefixBeyondMaximum) {
  Bytes b = B("0100");
  Append(b, {0x40, 0, 0, 0, 0, 0, 0, 0});
  Append(b,
         "20"
         "94100000000000000017");
  ExpectUnpackError(b, "field 2 (primary account number): length prefix 20 exceeds maximum 19");
  Bytes lll = B("0100");
  Append(lll, {0, 0, 0, 0, 0, 0, 0x04, 0});  // field 54
  Append(lll, "121");
  Append(lll, std::string(121, '0'));
  ExpectUnpackError(lll, "length prefix 121 exceeds maximum 120");
  Message m = Make0100();
  m.Set(2, "94100000000000000017");
  ExpectPackError(m, "length 20 exceeds maximum 19");
}

TEST(Iso8583Errors, NonDigitLengthPrefix) {
  Bytes b = Expected0100();
  b[12] = ' ';  // the "16" of field 2
  ExpectUnpackError(b, "field 2 (primary account number): length prefix byte 0x20 at offset 12");
  Bytes lll = B("0100");
  Append(lll, {0, 0, 0, 0, 0, 0, 0x04, 0});  // field 54
  Append(lll, "1x0");
  ExpectUnpackError(lll, "field 54 (additional amounts): length prefix byte 0x78 at offset 13");
}

TEST(Iso8583Errors, TrailingBytesAfterTheLastField) {
  Bytes b = Expected0100();
  Append(b, "Z");
  ExpectUnpackError(b, "1 trailing bytes after the last field (62)");
  Bytes no_fields = B("0800");
  Append(no_fields, {0, 0, 0, 0, 0, 0, 0, 0});
  Append(no_fields, "00");
  ExpectUnpackError(no_fields, "2 trailing bytes after the last field (0)");
}

TEST(Iso8583Errors, FieldWithoutSpec) {
  FieldTable narrow = Iso87Table();
  narrow[62] = FieldSpec{};
  Result<Message> r = Unpack(Expected0100(), narrow);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().message(), "field 62 is present in the bitmap but has no spec");
  Result<Bytes> p = Pack(Make0100(), narrow);
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().message(), "field 62 is set but has no spec");
}

TEST(Iso8583Errors, Field1SecondaryBitmap) {
  // Bit 1 set, but the secondary bitmap is missing.
  Bytes missing = B("0800");
  Append(missing, {0x80, 0, 0, 0, 0, 0, 0, 0});
  Append(missing, {0x04, 0, 0});
  ExpectUnpackError(missing, "bit 1 announces a secondary bitmap but 3 bytes follow");
  // Bit 1 set with an all-zero secondary bitmap.
  Bytes empty = B("0800");
  Append(empty, {0x82, 0, 0, 0, 0, 0, 0, 0});
  Append(empty, {0, 0, 0, 0, 0, 0, 0, 0});
  Append(empty, "0102030405");
  ExpectUnpackError(empty, "field 1: secondary bitmap present but announces no field 65..128");
  // Bit 1 clear but secondary fields were meant: the bytes are read as fields.
  Bytes unset = B("0800");
  Append(unset, {0x02, 0, 0, 0, 0, 0, 0, 0});
  Append(unset, {0x04, 0, 0, 0, 0, 0, 0, 0});
  Append(unset, "01");
  ExpectUnpackError(unset, "field 7 (transmission date and time): byte 0x04 at position 0");
  // Field 1 set by hand is refused by Pack.
  Message m = Make0800();
  m.Set(1, std::string(8, '\0'));
  ExpectPackError(m, "field 1 (secondary bitmap) must not be set");
}

TEST(Iso8583Errors, BinaryFieldWithTheWrongLength) {
  Message m = Make0100();
  m.Set(52, kPin.substr(0, 7));
  ExpectPackError(m, "field 52 (PIN data): binary field of fixed length 8 has length 7");
  Message mac = Make0400();
  mac.Set(128, kMac + "X");
  ExpectPackError(mac, "field 128 (message authentication code 2): binary field of fixed length 8");
  Message icc = Make0100();
  icc.Set(55, std::string(1000, '\x01'));
  ExpectPackError(icc, "field 55 (ICC data): length 1000 exceeds maximum 999");
  // On the wire, a short field 64 at the end is a truncation.
  Result<Bytes> packed = Pack(Make0200());
  ASSERT_RESULT_OK(packed);
  packed->pop_back();
  ExpectUnpackError(*packed, "message truncated: field 64 (message authentication code) needs 8");
}

TEST(Iso8583Errors, CharactersNotAllowedByTheFieldType) {
  Message m = Make0100();
  m.Set(41, std::string("TERM\x01"
                        "001",
                        8));
  ExpectPackError(m, "field 41 (card acceptor terminal identification): byte 0x01");
  Message rc = Make0110();
  rc.Set(39, "0!");
  ExpectPackError(rc, "field 39 (response code): byte 0x21");
  Message track = Make0200();
  track.Set(35, "9410000000000017^2812");
  ExpectPackError(track, "field 35 (track 2 data): byte 0x5E");
  Message fee("0200");
  fee.Set(28, "X00000100");
  ExpectPackError(fee, "must start with 'C' or 'D'");
  fee.Set(28, "C0000010A");
  ExpectPackError(fee, "field 28 (amount, transaction fee): byte 0x41 at position 8");
  Message text = Make0100();
  std::string name(40, 'A');
  name[5] = '\x7f';
  text.Set(43, name);
  ExpectPackError(text, "byte 0x7F at position 5 not allowed in a alphanumeric-special field");
  name[5] = '~';  // 0x7E, the last printable
  text.Set(43, name);
  EXPECT_TRUE(Pack(text).ok());
  Message fixed = Make0100();
  fixed.Set(3, "00000");
  ExpectPackError(fixed, "field 3 (processing code): numeric field of fixed length 6 has length 5");
}

// The codec checks digits and printable text eight bytes at a time: every
// byte value at every position of fields up to 28 bytes long (three words
// and a tail), through Pack and Unpack, against the documented classes;
// then random fields with several bad bytes.
TEST(Iso8583Errors, EveryByteAtEveryPositionIsCheckedLikeTheClassTable) {
  auto is_digit = [](int b) { return b >= '0' && b <= '9'; };
  auto is_printable = [](int b) { return b >= 0x20 && b <= 0x7E; };
  struct Case {
    int field;
    size_t length_max;
    char fill;
    bool (*allowed)(int);
  };
  // Field 2: LLVAR n..19; 34: LLVAR ans..28; 28: x+n 9 ('C' then 8 digits).
  const Case cases[] = {{2, 19, '7', +is_digit}, {34, 28, 'a', +is_printable}};
  for (const Case& c : cases) {
    for (size_t length = 1; length <= c.length_max; ++length) {
      for (size_t at = 0; at < length; ++at) {
        for (int b = 0; b < 256; ++b) {
          std::string value(length, c.fill);
          value[at] = static_cast<char>(b);
          Message m("0200");
          m.Set(c.field, value);
          Result<std::vector<uint8_t>> packed = Pack(m);
          ASSERT_EQ(packed.ok(), c.allowed(b))
              << "field " << c.field << " length " << length << " byte " << b << " at " << at;
          // Unpack sees the same bytes on the wire.
          Message good("0200");
          good.Set(c.field, std::string(length, c.fill));
          Result<std::vector<uint8_t>> wire = Pack(good);
          ASSERT_TRUE(wire.ok());
          (*wire)[4 + 8 + 2 + at] = static_cast<uint8_t>(b);
          ASSERT_EQ(Unpack(*wire).ok(), c.allowed(b))
              << "unpack field " << c.field << " byte " << b;
        }
      }
    }
  }
  for (size_t at = 1; at < 9; ++at) {
    for (int b = 0; b < 256; ++b) {
      std::string fee = "C00000100";
      fee[at] = static_cast<char>(b);
      Message m("0200");
      m.Set(28, fee);
      ASSERT_EQ(Pack(m).ok(), is_digit(b)) << "field 28 byte " << b << " at " << at;
    }
  }
  std::mt19937_64 rng(8583);
  for (int round = 0; round < 20000; ++round) {
    const bool numeric = round % 2 == 0;
    const size_t length = 1 + rng() % (numeric ? 19 : 28);
    std::string value(length, numeric ? '1' : 'z');
    bool ok = true;
    for (int bad = static_cast<int>(rng() % 4); bad > 0; --bad) {
      const int b = static_cast<int>(rng() % 256);
      value[rng() % length] = static_cast<char>(b);
    }
    for (char ch : value) ok = ok && (numeric ? is_digit : is_printable)(static_cast<uint8_t>(ch));
    Message m("0200");
    m.Set(numeric ? 2 : 34, value);
    ASSERT_EQ(Pack(m).ok(), ok) << "round " << round;
  }
}

TEST(Iso8583Errors, TooLongMessage) {
  // The 1987 table cannot reach 65535 bytes; a table of LLLVAR fields can.
  FieldTable wide = Iso87Table();
  for (int f = 2; f <= kFieldNumberMax; ++f)
    wide[f] = FieldSpec{FieldType::kAns, LengthFormat::kLllvar, 999, "wide"};
  Message m("0200");
  for (int f = 2; f <= 70; ++f) m.Set(f, std::string(999, 'a'));
  ExpectPackError(m, "message too long", wide);
  Bytes huge(kMessageBytesMax + 1, '0');
  ExpectUnpackError(huge, "message too long");
}

// ---------------------------------------------------------------------------
// Fuzz-like robustness

TEST(Iso8583Fuzz, EveryTruncationIsRejected) {
  for (const Message& m : {Make0100(), Make0200(), Make0400(), Make0800()}) {
    Result<Bytes> packed = Pack(m);
    ASSERT_RESULT_OK(packed);
    for (size_t n = 0; n < packed->size(); ++n) {
      Bytes prefix(packed->begin(), packed->begin() + static_cast<std::ptrdiff_t>(n));
      EXPECT_FALSE(Unpack(prefix).ok()) << "prefix of " << n << " bytes accepted";
    }
  }
}

TEST(Iso8583Fuzz, RandomMutationsNeverCrashAndRoundTripWhenAccepted) {
  std::mt19937_64 rng(8583);
  std::vector<Bytes> seeds;
  for (const Message& m :
       {Make0100(), Make0110(), Make0200(), Make0220(), Make0400(), Make0420(), Make0800()}) {
    Result<Bytes> packed = Pack(m);
    ASSERT_RESULT_OK(packed);
    seeds.push_back(*packed);
  }
  int accepted = 0;
  constexpr int kIterations = 20000;
  for (int i = 0; i < kIterations; ++i) {
    Bytes b = seeds[rng() % seeds.size()];
    int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits && !b.empty(); ++e) {
      size_t at = rng() % b.size();
      switch (rng() % 5) {
        case 0:
          b[at] = static_cast<uint8_t>(rng());
          break;
        case 1:
          b[at] ^= static_cast<uint8_t>(1u << (rng() % 8));
          break;
        case 2:
          b.erase(b.begin() + static_cast<std::ptrdiff_t>(at));
          break;
        case 3:
          b.insert(b.begin() + static_cast<std::ptrdiff_t>(at), static_cast<uint8_t>(rng()));
          break;
        case 4:
          b.resize(at);
          break;
      }
    }
    Result<Message> m = Unpack(b);
    if (!m.ok()) {
      EXPECT_FALSE(m.status().message().empty());
      continue;
    }
    ++accepted;
    Result<Bytes> repacked = Pack(*m);
    ASSERT_RESULT_OK(repacked);
    EXPECT_EQ(*repacked, b);
    std::optional<std::span<const uint8_t>> as_read = m->PackedIfUnchanged();
    ASSERT_TRUE(as_read.has_value());
    EXPECT_EQ(Bytes(as_read->begin(), as_read->end()), b);
  }
  EXPECT_LT(accepted, kIterations);
}

// ---------------------------------------------------------------------------
// Message

TEST(Iso8583Message, SetGetClearAndReplace) {
  Message m("0100");
  EXPECT_FALSE(m.Has(2));
  EXPECT_EQ(m.Get(2), "");
  EXPECT_FALSE(m.Find(2).has_value());
  m.Set(2, "1234567890123");
  m.Set(2, "12");  // shorter: in place
  EXPECT_EQ(m.Get(2), "12");
  m.Set(2, "123456789012345678");  // longer: appended
  EXPECT_EQ(m.Get(2), "123456789012345678");
  m.Set(3, m.Get(2).substr(0, 6));  // value aliasing the message's own storage
  EXPECT_EQ(m.Get(3), "123456");
  EXPECT_EQ(m.FieldCount(), 2);
  EXPECT_EQ(m.NextField(0), 2);
  EXPECT_EQ(m.NextField(2), 3);
  EXPECT_EQ(m.NextField(3), 0);
  m.Clear(2);
  EXPECT_FALSE(m.Has(2));
  EXPECT_EQ(m.FieldCount(), 1);
  for (int i = 0; i < 10000; ++i) m.Set(48, std::string(static_cast<size_t>(i % 500), 'x'));
  EXPECT_EQ(m.Get(48), std::string(9999 % 500, 'x'));
  EXPECT_EQ(m.Get(3), "123456");
  m.Set(128, kMac);
  EXPECT_EQ(m.NextField(64), 128);
  EXPECT_EQ(m.NextField(128), 0);
}

// An unpacked message hands out the bytes it was read from (a request's
// MAC is checked over them) until anything changes; a built message, one
// read with another table, and one edited have none, and PackAppend
// appends exactly Pack()'s bytes.
TEST(Iso8583Message, PackedIfUnchangedIsTheBodyReadUntilTheMessageChanges) {
  Message built = Make0200();
  built.Set(128, kMac);  // secondary bitmap
  EXPECT_FALSE(built.PackedIfUnchanged().has_value());
  Result<std::vector<uint8_t>> packed = Pack(built);
  ASSERT_RESULT_OK(packed);
  Result<Message> m = Unpack(*packed);
  ASSERT_RESULT_OK(m);
  auto bytes_of = [](const Message& msg) {
    std::optional<std::span<const uint8_t>> v = msg.PackedIfUnchanged();
    return v ? std::optional<Bytes>(Bytes(v->begin(), v->end())) : std::nullopt;
  };
  EXPECT_EQ(bytes_of(*m), *packed);
  Message copy = *m;  // a copy has them too
  EXPECT_EQ(bytes_of(copy), *packed);
  copy.Clear(99);  // absent: nothing changes
  EXPECT_EQ(bytes_of(copy), *packed);
  copy.Clear(2);
  EXPECT_FALSE(copy.PackedIfUnchanged().has_value());
  Message same_value = *m;
  same_value.Set(11, m->Get(11));  // any Set counts as a change
  EXPECT_FALSE(same_value.PackedIfUnchanged().has_value());
  Message mti = *m;
  mti.set_mti("0210");
  EXPECT_FALSE(mti.PackedIfUnchanged().has_value());
  EXPECT_EQ(bytes_of(*m), *packed);  // the original is untouched
  FieldTable other = Iso87Table();
  Result<Message> with_other = Unpack(*packed, other);
  ASSERT_RESULT_OK(with_other);
  EXPECT_FALSE(with_other->PackedIfUnchanged().has_value());
  // PackAppend: Pack()'s bytes after what the buffer holds; nothing on failure.
  std::string record = "head";
  ASSERT_TRUE(PackAppend(built, &record).ok());
  EXPECT_EQ(record, "head" + std::string(packed->begin(), packed->end()));
  Message bad = built;
  bad.Set(3, "12345");  // fixed 6
  EXPECT_FALSE(PackAppend(bad, &record).ok());
  EXPECT_EQ(record.size(), 4 + packed->size());
}

// Unpack keeps the fields' bytes in one copy of the body (length prefixes
// included, skipped by the slots): an unpacked message reads, edits, grows,
// compacts and packs exactly like one built field by field.
TEST(Iso8583Message, UnpackedMessageEditsAndRepacksLikeABuiltOne) {
  Message built = Make0100();
  built.Set(100, "12345");  // LLVAR in the secondary bitmap
  Result<std::vector<uint8_t>> packed = Pack(built);
  ASSERT_RESULT_OK(packed);
  Result<Message> m = Unpack(*packed);
  ASSERT_RESULT_OK(m);
  EXPECT_TRUE(*m == built);
  EXPECT_EQ(m->Get(2), "9410000000000017");  // LLVAR: after its 2-digit prefix
  EXPECT_EQ(m->Get(55), built.Get(55));      // LLLVAR binary
  EXPECT_EQ(m->Get(100), "12345");
  m->Set(2, "94100000000000170");  // longer: appended after the body's copy
  m->Set(4, "000000000001");       // same size: in place
  m->Clear(62);
  built.Set(2, "94100000000000170");
  built.Set(4, "000000000001");
  built.Clear(62);
  for (int i = 0; i < 3000; ++i) {  // many compactions
    m->Set(48, std::string(static_cast<size_t>(i % 300), 'x'));
  }
  built.Set(48, std::string(2999 % 300, 'x'));
  EXPECT_TRUE(*m == built);
  EXPECT_EQ(m->Get(100), "12345");
  Result<std::vector<uint8_t>> again = Pack(*m);
  ASSERT_RESULT_OK(again);
  EXPECT_EQ(*again, *Pack(built));
}

TEST(Iso8583Message, ForEachFieldVisitsPresentFieldsInWireOrder) {
  Message m("0200");
  m.Set(128, kMac);
  m.Set(2, "12");
  m.Set(64, kMac);
  m.Set(65, kMac);
  m.Set(39, "00");
  m.Clear(2);
  std::vector<std::pair<int, std::string>> seen;
  m.ForEachField([&](int f, std::string_view v) { seen.emplace_back(f, std::string(v)); });
  const std::vector<std::pair<int, std::string>> want = {
      {39, "00"}, {64, std::string(kMac)}, {65, std::string(kMac)}, {128, std::string(kMac)}};
  EXPECT_EQ(seen, want);
  Message empty("0800");
  int calls = 0;
  empty.ForEachField([&](int, std::string_view) { ++calls; });
  EXPECT_EQ(calls, 0);
}

TEST(Iso8583Message, EqualityComparesMtiAndFields) {
  EXPECT_TRUE(Make0100() == Make0100());
  Message other = Make0100();
  other.Set(11, "000002");
  EXPECT_FALSE(other == Make0100());
  other = Make0100();
  other.set_mti("0200");
  EXPECT_FALSE(other == Make0100());
  other = Make0100();
  other.Clear(62);
  EXPECT_FALSE(other == Make0100());
}

// ---------------------------------------------------------------------------
// Framing

TEST(Iso8583Framing, FrameUnframeAndReadLength) {
  Bytes body = Expected0100();
  Result<Bytes> framed = Frame(body);
  ASSERT_RESULT_OK(framed);
  EXPECT_EQ((*framed)[0], body.size() >> 8);
  EXPECT_EQ((*framed)[1], body.size() & 0xFF);
  Result<size_t> length = ReadFrameLength(*framed);
  ASSERT_RESULT_OK(length);
  EXPECT_EQ(*length, body.size());
  Result<std::span<const uint8_t>> unframed = Unframe(*framed);
  ASSERT_RESULT_OK(unframed);
  EXPECT_EQ(Bytes(unframed->begin(), unframed->end()), body);

  EXPECT_FALSE(ReadFrameLength(Bytes{0x01}).ok());
  EXPECT_EQ(*ReadFrameLength(Bytes{0xFF, 0xFE}), 65534u);
  Bytes short_frame = *framed;
  short_frame.pop_back();
  EXPECT_FALSE(Unframe(short_frame).ok());
  Bytes long_frame = *framed;
  long_frame.push_back(0);
  EXPECT_FALSE(Unframe(long_frame).ok());
  EXPECT_FALSE(Frame(Bytes(kMessageBytesMax + 1)).ok());
  EXPECT_TRUE(Frame(Bytes(kMessageBytesMax)).ok());
}

// PackFramed packs straight into the frame (one buffer): the same bytes as
// Frame(Pack()), and the same refusals.
TEST(Iso8583Framing, PackFramedIsTheFrameOfPackAndRefusesWhatPackRefuses) {
  for (const Message& m : {Make0100(), Make0110(), Make0800(), Message("0800")}) {
    Result<Bytes> body = Pack(m);
    ASSERT_RESULT_OK(body);
    Result<Bytes> framed = PackFramed(m);
    ASSERT_RESULT_OK(framed);
    EXPECT_EQ(Hex(*framed), Hex(*Frame(*body)));
  }
  Message bad_mti("01X0");
  EXPECT_FALSE(PackFramed(bad_mti).ok());
  Message field1 = Make0100();
  field1.Set(1, std::string(8, '\0'));
  EXPECT_FALSE(PackFramed(field1).ok());
  Message bad_content = Make0100();
  bad_content.Set(4, "00000000012X");
  EXPECT_FALSE(PackFramed(bad_content).ok());
}

// ---------------------------------------------------------------------------
// Helpers

TEST(Iso8583Helpers, ResponseMti) {
  EXPECT_EQ(*ResponseMti("0100"), "0110");
  EXPECT_EQ(*ResponseMti("0200"), "0210");
  EXPECT_EQ(*ResponseMti("0220"), "0230");
  EXPECT_EQ(*ResponseMti("0221"), "0230");
  EXPECT_EQ(*ResponseMti("0400"), "0410");
  EXPECT_EQ(*ResponseMti("0420"), "0430");
  EXPECT_EQ(*ResponseMti("0800"), "0810");
  EXPECT_FALSE(ResponseMti("0110").ok());
  EXPECT_FALSE(ResponseMti("01").ok());
}

TEST(Iso8583Helpers, ResponseCodes) {
  EXPECT_EQ(ResponseCodeText(ResponseCode::kApproved), "00");
  EXPECT_EQ(ResponseCodeText(ResponseCode::kDoNotHonour), "05");
  EXPECT_EQ(ResponseCodeText(ResponseCode::kSystemMalfunction), "96");
  EXPECT_EQ(ResponseCodeMeaning(ResponseCode::kInsufficientFunds), "insufficient funds");
  for (ResponseCode code : kAllResponseCodes) {
    Result<ResponseCode> parsed = ParseResponseCode(ResponseCodeText(code));
    ASSERT_RESULT_OK(parsed);
    EXPECT_EQ(*parsed, code);
    EXPECT_NE(ResponseCodeMeaning(code), "unknown response code");
  }
  EXPECT_FALSE(ParseResponseCode("99").ok());
  EXPECT_FALSE(ParseResponseCode("5").ok());
  EXPECT_FALSE(ParseResponseCode("A0").ok());
}

TEST(Iso8583Helpers, Amounts) {
  EXPECT_EQ(*ParseAmount("000000012345"), 12345u);
  EXPECT_EQ(*ParseAmount("999999999999"), 999999999999u);
  EXPECT_FALSE(ParseAmount("00000001234").ok());
  EXPECT_FALSE(ParseAmount("0000000123x5").ok());
  EXPECT_FALSE(ParseAmount("-00000012345").ok());
  EXPECT_EQ(*FormatAmount(12345), "000000012345");
  EXPECT_EQ(*FormatAmount(0), "000000000000");
  EXPECT_FALSE(FormatAmount(1000000000000u).ok());
  EXPECT_EQ(*ParseDigits("9999999999999999999"), 9999999999999999999u);
  EXPECT_FALSE(ParseDigits("18446744073709551616").ok());  // 2^64: 20 digits
  EXPECT_FALSE(ParseDigits("").ok());
  EXPECT_EQ(*FormatDigits(42, 6), "000042");
  EXPECT_FALSE(FormatDigits(1000000, 6).ok());
  EXPECT_FALSE(FormatDigits(1, 0).ok());
  EXPECT_EQ(*FormatDigits(UINT64_MAX % 10000000000000000000u, 19), "8446744073709551615");
}

TEST(Iso8583Helpers, MaskPan) {
  EXPECT_EQ(MaskPan("9410000000000017"), "941000******0017");
  EXPECT_EQ(MaskPan("4111111111111111111"), "411111*********1111");
  EXPECT_EQ(MaskPan("1234567890"), "******7890");
  EXPECT_EQ(MaskPan("1234567"), "*******");
  EXPECT_EQ(MaskPan(""), "");
}

TEST(Iso8583Helpers, OriginalDataElements) {
  OriginalData d{"0100", "000001", "0101120000", "00000000408", "00000000000"};
  Result<std::string> text = FormatOriginalData(d);
  ASSERT_RESULT_OK(text);
  EXPECT_EQ(*text,
            "0100"
            "000001"
            "0101120000"
            "00000000408"
            "00000000000");
  Result<OriginalData> parsed = ParseOriginalData(*text);
  ASSERT_RESULT_OK(parsed);
  EXPECT_EQ(*parsed, d);
  EXPECT_FALSE(ParseOriginalData(text->substr(1)).ok());
  EXPECT_FALSE(ParseOriginalData("0100000001010112000000000000408000000000 0X").ok());
  d.stan = "1";
  EXPECT_FALSE(FormatOriginalData(d).ok());
}

TEST(Iso8583Helpers, SimTokenLayout) {
  Result<SimTokenData> token = ParseSimToken(kSimToken);
  ASSERT_RESULT_OK(token);
  EXPECT_EQ(token->version, 1);
  EXPECT_EQ(token->token_id, "9410000000000017");
  EXPECT_EQ(token->counter, 42u);
  EXPECT_EQ(token->cryptogram[0], 0x00);
  EXPECT_EQ(token->cryptogram[7], 0x77);
  EXPECT_EQ(token->time_unix_s, 1767225600u);
  Result<std::string> text = FormatSimToken(*token);
  ASSERT_RESULT_OK(text);
  EXPECT_EQ(*text, kSimToken);

  std::string bad = kSimToken;
  bad[0] = '2';
  EXPECT_FALSE(ParseSimToken(bad).ok());
  bad = kSimToken;
  bad[30] = 'a';  // lowercase hex is not canonical
  EXPECT_FALSE(ParseSimToken(bad).ok());
  bad = kSimToken;
  bad[20] = 'X';
  EXPECT_FALSE(ParseSimToken(bad).ok());
  EXPECT_FALSE(ParseSimToken(kSimToken.substr(1)).ok());
  SimTokenData wrong = *token;
  wrong.counter = 10000000000u;
  EXPECT_FALSE(FormatSimToken(wrong).ok());
  wrong = *token;
  wrong.token_id = "123";
  EXPECT_FALSE(FormatSimToken(wrong).ok());
}

TEST(Iso8583Helpers, AdditionalAmounts) {
  std::vector<AdditionalAmount> amounts = {
      {0, kAmountTypeLedgerBalance, 408, false, 1000000},
      {0, kAmountTypeAvailableBalance, 408, true, 25},
  };
  Result<std::string> text = FormatAdditionalAmounts(amounts);
  ASSERT_RESULT_OK(text);
  EXPECT_EQ(*text,
            "0001408C000001000000"
            "0002408D000000000025");
  Result<std::vector<AdditionalAmount>> parsed = ParseAdditionalAmounts(*text);
  ASSERT_RESULT_OK(parsed);
  EXPECT_EQ(*parsed, amounts);
  EXPECT_FALSE(ParseAdditionalAmounts("").ok());
  EXPECT_FALSE(ParseAdditionalAmounts(text->substr(1)).ok());
  EXPECT_FALSE(ParseAdditionalAmounts("0001408X001000000000").ok());
  EXPECT_FALSE(ParseAdditionalAmounts(std::string(140, '0')).ok());
  amounts[0].currency = 1000;
  EXPECT_FALSE(FormatAdditionalAmounts(amounts).ok());
  EXPECT_FALSE(FormatAdditionalAmounts({}).ok());
}

// ---------------------------------------------------------------------------
// Speed: printed, and bounded loosely so a regression of 100x is caught.

TEST(Iso8583Bench, PackAndUnpackCostAboutAMicrosecond) {
  const Bytes request = *Pack(Make0200());
  constexpr int kRounds = 100000;
  size_t sink = 0;
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kRounds; ++i) {
    Result<Message> m = Unpack(request);
    sink += m->FieldCount();
  }
  auto mid = std::chrono::steady_clock::now();
  const Message message = Make0200();
  for (int i = 0; i < kRounds; ++i) {
    Result<Bytes> b = Pack(message);
    sink += b->size();
  }
  auto end = std::chrono::steady_clock::now();
  double unpack_ns = std::chrono::duration<double, std::nano>(mid - start).count() / kRounds;
  double pack_ns = std::chrono::duration<double, std::nano>(end - mid).count() / kRounds;
  std::printf("iso8583 0200 (%zu bytes, 20 fields): unpack %.0f ns, pack %.0f ns (sink %zu)\n",
              request.size(), unpack_ns, pack_ns, sink);
  EXPECT_LT(unpack_ns, 100000.0);
  EXPECT_LT(pack_ns, 100000.0);
}

}  // namespace
}  // namespace narae::switching
