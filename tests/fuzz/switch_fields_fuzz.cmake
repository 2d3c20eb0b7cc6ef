# The switch's config / field 48, 55, 62 parsers: included by
# tests/fuzz/CMakeLists.txt. Links the switch's sources (not main.cpp) with
# the ledger and crypto ones; RocksDB stays uninstrumented.
find_package(Threads REQUIRED)
find_package(RocksDB CONFIG REQUIRED)
find_package(Boost 1.74 REQUIRED)
find_package(nlohmann_json CONFIG REQUIRED)
file(GLOB narae_fuzz_switch_sources ${PROJECT_SOURCE_DIR}/switch/*.cpp
     ${PROJECT_SOURCE_DIR}/ledger/*.cpp ${PROJECT_SOURCE_DIR}/crypto/*.cpp)
# main.cpp, and server.cpp / config.cpp / http_server.cpp / api.cpp: Boost 1.74's Asio has no C++20
# coroutines under clang 14 (the server does not build with it).
list(FILTER narae_fuzz_switch_sources EXCLUDE REGEX ".*/(main|server|config|http_server|api)\\.cpp$")
narae_fuzz(switch_fields ${narae_fuzz_switch_sources})
target_link_libraries(switch_fields_fuzz PRIVATE RocksDB::rocksdb cereal::cereal Boost::headers
                      OpenSSL::SSL OpenSSL::Crypto Threads::Threads nlohmann_json::nlohmann_json)
