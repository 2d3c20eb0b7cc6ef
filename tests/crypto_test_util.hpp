// Helpers shared by the crypto tests: hex literals and a Result assertion.
#pragma once

#include <gtest/gtest.h>

#include <string_view>

#include "crypto/crypto.hpp"

// For Result<T> values (prints the error when it is not ok).
#define ASSERT_OK(expr) ASSERT_TRUE((expr).ok()) << (expr).status().ToString()

namespace narae::crypto {

// Bytes from a hex literal; a bad literal fails the test.
inline Bytes H(std::string_view hex) {
  Result<Bytes> b = FromHex(hex);
  EXPECT_TRUE(b.ok()) << hex;
  return b.ok() ? *b : Bytes{};
}

}  // namespace narae::crypto
