// libFuzzer target for the ISO 8583 codec (switch/iso8583.hpp).
//
// Property: Unpack() never crashes; when it accepts an input, Pack() of the
// result succeeds and reproduces the input byte for byte, and unpacking that
// again gives an equal Message. The field 54/62/90 helpers are fed the
// corresponding fields and must not crash either.
//
// Build by hand (not wired into CMake):
//   clang++-14 -std=c++20 -fsanitize=fuzzer,address -I/work/main \
//     tests/fuzz/iso8583_fuzz.cpp switch/iso8583.cpp -o /tmp/isofuzz
//   /tmp/isofuzz -max_total_time=30 tests/fuzz/corpus/iso8583
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>

#include "switch/iso8583.hpp"

using namespace narae::switching;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::span<const uint8_t> input(data, size);
  narae::Result<Message> message = Unpack(input);
  if (!message.ok()) {
    if (message.status().message().empty()) std::abort();
    return 0;
  }
  narae::Result<std::vector<uint8_t>> packed = Pack(*message);
  if (!packed.ok()) std::abort();
  if (packed->size() != size || !std::equal(packed->begin(), packed->end(), data)) std::abort();
  narae::Result<Message> again = Unpack(*packed);
  if (!again.ok() || !(*again == *message)) std::abort();

  // Helpers on the structured fields: must return a value or an error.
  if (auto f54 = message->Find(54)) {
    auto amounts = ParseAdditionalAmounts(*f54);
    if (amounts.ok()) {
      auto text = FormatAdditionalAmounts(*amounts);
      if (!text.ok() || *text != *f54) std::abort();
    }
  }
  if (auto f62 = message->Find(62)) {
    auto token = ParseSimToken(*f62);
    if (token.ok()) {
      auto text = FormatSimToken(*token);
      if (!text.ok() || *text != *f62) std::abort();
    }
  }
  if (auto f90 = message->Find(90)) {
    auto original = ParseOriginalData(*f90);
    if (!original.ok()) std::abort();  // field 90 is n42: always parses
    auto text = FormatOriginalData(*original);
    if (!text.ok() || *text != *f90) std::abort();
  }
  if (auto f4 = message->Find(4)) {
    auto amount = ParseAmount(*f4);
    if (!amount.ok()) std::abort();  // field 4 is n12: always parses
    if (*FormatAmount(*amount) != *f4) std::abort();
  }
  if (auto f2 = message->Find(2)) (void)MaskPan(*f2);
  (void)ResponseMti(message->mti());
  if (auto f39 = message->Find(39)) (void)ParseResponseCode(*f39);
  return 0;
}
