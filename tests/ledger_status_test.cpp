#include <gtest/gtest.h>

#include "ledger/status.hpp"

namespace narae {
namespace {

TEST(Status, OkAndErrorsCarryCodeAndMessage) {
  Status ok = Status::Ok();
  EXPECT_TRUE(ok.ok());
  Status bad = Status::NotFound("account 7");
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.code(), StatusCode::kNotFound);
  EXPECT_EQ(bad.ToString(), "NotFound: account 7");
}

TEST(Result, HoldsValueOrError) {
  Result<int> v = 42;
  ASSERT_TRUE(v.ok());
  EXPECT_EQ(*v, 42);
  Result<int> e = Status::IOError("disk");
  EXPECT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), StatusCode::kIOError);
}

TEST(ResultDeathTest, ValueOfErrorAborts) {
  Result<int> e = Status::IOError("disk");
  EXPECT_DEATH((void)e.value(), "NARAE_CHECK failed");
}

}  // namespace
}  // namespace narae
