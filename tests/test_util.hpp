// Shared test helpers: temporary folders, Status assertions, RocksDB's
// OPTIONS file.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>

#include "ledger/status.hpp"

#define ASSERT_OK(expr)                    \
  do {                                     \
    const ::narae::Status _s = (expr);     \
    ASSERT_TRUE(_s.ok()) << _s.ToString(); \
  } while (0)
#define EXPECT_OK(expr)                    \
  do {                                     \
    const ::narae::Status _s = (expr);     \
    EXPECT_TRUE(_s.ok()) << _s.ToString(); \
  } while (0)

namespace narae::testing {

// A folder under $TMPDIR removed when the object dies.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "narae-test-XXXXXX").string();
    NARAE_CHECK(mkdtemp(tmpl.data()) != nullptr);
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The newest OPTIONS file RocksDB wrote in `db_path` (the options a
// database really runs with): its name and text; both empty if there is
// none. RocksDB's temporary `OPTIONS-N.dbtmp` files are skipped.
struct RocksDbOptionsFile {
  std::string name;
  std::string text;
};
inline RocksDbOptionsFile NewestRocksDbOptions(const std::string& db_path) {
  RocksDbOptionsFile newest;
  for (const auto& f : std::filesystem::directory_iterator(db_path)) {
    const std::string name = f.path().filename().string();
    if (name.rfind("OPTIONS-", 0) == 0 && name.find('.') == std::string::npos &&
        name > newest.name) {
      newest.name = name;
    }
  }
  if (newest.name.empty()) return newest;
  std::ifstream in(db_path + "/" + newest.name);
  newest.text.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  return newest;
}

}  // namespace narae::testing
