// A demo bank (master key, key store, ledger) seeded once per test suite,
// because making its keys is slow, and copied into each test's own folder.
// Used by the in-process HTTP, split and interbank tests.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <memory>
#include <string>

#include "crypto/crypto.hpp"
#include "ledger/ledger.hpp"
#include "switch/bank.hpp"
#include "tests/test_util.hpp"

namespace narae::switching::testing_bank {

class SeededDemoBank {
 public:
  // Seeds the folder; `more` runs on the open ledger and key store before the
  // ledger is closed (other banks, terminals). On a failure ready() is false.
  void Seed(const SeedOptions& options,
            const std::function<void(ledger::Ledger&, crypto::KeyStore&)>& more = {}) {
    ASSERT_TRUE(crypto::CreateMasterKeyFile(dir_.Sub("master.key")).ok());
    Result<crypto::SecretBytes> mk = crypto::LoadMasterKeyFile(dir_.Sub("master.key"));
    ASSERT_TRUE(mk.ok()) << mk.status().ToString();
    std::filesystem::create_directories(dir_.Sub("keys"));
    auto ks = crypto::KeyStore::Open(dir_.Sub("keys"), *mk);
    ASSERT_TRUE(ks.ok()) << ks.status().ToString();
    ledger::Options o;
    o.path = dir_.Sub("ledger");
    o.sync = false;
    auto l = ledger::Ledger::Open(o);
    ASSERT_TRUE(l.ok()) << l.status().ToString();
    auto bank = SeedDemo(**l, **ks, options);
    ASSERT_TRUE(bank.ok()) << bank.status().ToString();
    if (more) more(**l, **ks);
    ASSERT_FALSE(::testing::Test::HasFatalFailure());
    ASSERT_TRUE((*l)->Close().ok());
    bank_ = std::make_unique<DemoBank>(std::move(*bank));
  }

  bool ready() const { return bank_ != nullptr; }
  const DemoBank& bank() const { return *bank_; }

  // Copies the seeded folder into `to` and opens its key store into *keys.
  void CopyTo(const std::string& to, std::unique_ptr<crypto::KeyStore>* keys) const {
    ASSERT_TRUE(ready());
    std::filesystem::copy(dir_.path(), to,
                          std::filesystem::copy_options::recursive |
                              std::filesystem::copy_options::overwrite_existing);
    const std::string key_file = to + "/master.key";
    std::filesystem::permissions(
        key_file, std::filesystem::perms::owner_read | std::filesystem::perms::owner_write);
    Result<crypto::SecretBytes> mk = crypto::LoadMasterKeyFile(key_file);
    ASSERT_TRUE(mk.ok()) << mk.status().ToString();
    auto ks = crypto::KeyStore::Open(to + "/keys", *mk);
    ASSERT_TRUE(ks.ok()) << ks.status().ToString();
    *keys = std::move(*ks);
  }

 private:
  narae::testing::TempDir dir_;
  std::unique_ptr<DemoBank> bank_;
};

}  // namespace narae::switching::testing_bank
