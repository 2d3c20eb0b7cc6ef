# PIN block parsing (crypto): included by tests/fuzz/CMakeLists.txt.
file(GLOB narae_fuzz_crypto_sources ${PROJECT_SOURCE_DIR}/crypto/*.cpp)
narae_fuzz(pin_block ${narae_fuzz_crypto_sources})
target_link_libraries(pin_block_fuzz PRIVATE OpenSSL::Crypto)
