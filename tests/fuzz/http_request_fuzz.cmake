# The storefront API's network parsers (tests/fuzz/http_request_fuzz.cpp).
narae_fuzz(http_request ${PROJECT_SOURCE_DIR}/switch/api_parse.cpp)
target_link_libraries(http_request_fuzz PRIVATE nlohmann_json::nlohmann_json Boost::headers)
