// libFuzzer target for PIN block parsing (crypto/card.cpp, docs/crypto.md).
//
// Input: byte 0 selects the format (even: ISO 0, odd: ISO 4), then the PIN
// block (8 or 16 bytes), then the PAN as text. Properties: decoding a clear
// format 0 block and decrypting either format never crash and either fail
// with a message or give 4..12 digits; a decoded PIN encodes back to a block
// that decodes to the same PIN; the public checks built on them
// (VerifyPinPvv, TranslatePinBlock, PvvFromPinBlock) return a value or an
// error for any block.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "crypto/crypto.hpp"
#include "crypto/internal.hpp"

using namespace narae::crypto;

namespace {

const uint8_t kTdesKey[16] = {0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef,
                              0xfe, 0xdc, 0xba, 0x98, 0x76, 0x54, 0x32, 0x10};
const uint8_t kAesKey[16] = {0x2b, 0x7e, 0x15, 0x16, 0x28, 0xae, 0xd2, 0xa6,
                             0xab, 0xf7, 0x15, 0x88, 0x09, 0xcf, 0x4f, 0x3c};

void CheckPin(std::string_view pin) {
  if (pin.size() < 4 || pin.size() > 12) std::abort();
  for (char c : pin) {
    if (c < '0' || c > '9') std::abort();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const bool iso4 = (data[0] & 1) != 0;
  const size_t block_bytes = iso4 ? 16 : 8;
  if (size < 1 + block_bytes) return 0;
  ByteView block(data + 1, block_bytes);
  std::string_view pan(reinterpret_cast<const char*>(data + 1 + block_bytes),
                       size - 1 - block_bytes);

  // A clear format 0 block (what a terminal's PIN pad XORs before encrypting).
  if (!iso4) {
    narae::Result<internal::ClearPin> pin = internal::DecodePinBlockIso0(block, pan);
    if (!pin.ok()) {
      if (pin.status().message().empty()) std::abort();
    } else {
      CheckPin(pin->digits());
      narae::Result<Bytes> again = EncodePinBlockIso0(pin->digits(), pan);
      if (!again.ok()) std::abort();
      narae::Result<internal::ClearPin> back = internal::DecodePinBlockIso0(*again, pan);
      if (!back.ok() || back->digits() != pin->digits()) std::abort();
    }
  }
  // The encrypted block as it arrives in field 52.
  const PinBlockFormat format = iso4 ? PinBlockFormat::kIso4 : PinBlockFormat::kIso0;
  ByteView key = iso4 ? ByteView(kAesKey, 16) : ByteView(kTdesKey, 16);
  narae::Result<internal::ClearPin> pin = internal::DecryptPinBlock(format, key, block, pan);
  if (pin.ok()) {
    CheckPin(pin->digits());
    narae::Result<Bytes> again = EncryptPinBlock(format, key, pin->digits(), pan);
    if (!again.ok()) std::abort();
    narae::Result<internal::ClearPin> back = internal::DecryptPinBlock(format, key, *again, pan);
    if (!back.ok() || back->digits() != pin->digits()) std::abort();
  } else if (pin.status().message().empty()) {
    std::abort();
  }
  (void)PvvFromPinBlock(key, format, block, pan, ByteView(kTdesKey, 16), 1);
  (void)VerifyPinPvv(key, format, block, pan, ByteView(kTdesKey, 16), 1, "1234");
  (void)TranslatePinBlock(key, format, block, pan, ByteView(kAesKey, 16), PinBlockFormat::kIso4);
  return 0;
}
