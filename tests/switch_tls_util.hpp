// TLS for the switch tests: certificates made by the openssl command line and
// a blocking TLS client doing one ISO 8583 round trip (tests/switch_server_test.cpp,
// tests/switch_interbank_test.cpp).
#pragma once

#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "ledger/status.hpp"
#include "switch/iso8583.hpp"

namespace narae::switching::tls_test {

inline bool HaveOpenssl() { return std::system("openssl version >/dev/null 2>&1") == 0; }

// dir/name.key and dir/name.crt with subject CN `cn`: self-signed, or signed
// by dir/ca_name.{crt,key}.
inline void MakeCert(const std::string& dir, const std::string& name, const std::string& cn,
                     const std::string& ca_name = "") {
  std::string cmd;
  if (ca_name.empty()) {
    cmd =
        "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 "
        "-subj '/CN=" +
        cn + "' -keyout " + dir + "/" + name + ".key -out " + dir + "/" + name + ".crt 2>/dev/null";
  } else {
    cmd = "openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj '/CN=" + cn +
          "' -keyout " + dir + "/" + name + ".key -out " + dir + "/" + name +
          ".csr 2>/dev/null && openssl x509 -req -days 2 -in " + dir + "/" + name + ".csr -CA " +
          dir + "/" + ca_name + ".crt -CAkey " + dir + "/" + ca_name +
          ".key -CAcreateserial -out " + dir + "/" + name + ".crt 2>/dev/null";
  }
  NARAE_CHECK(std::system(cmd.c_str()) == 0);
}

// Connects with TLS (verifying the server against `ca_file`, presenting
// `cert`/`key` when given), sends `request` and returns the response, or
// nullopt when the handshake, the write or the read fails.
inline std::optional<Message> TlsRoundTrip(uint16_t port, const std::string& ca_file,
                                           const Message& request, const std::string& cert = "",
                                           const std::string& key = "") {
  namespace asio = boost::asio;
  namespace ssl = boost::asio::ssl;
  asio::io_context ioc;
  ssl::context ctx(ssl::context::tls_client);
  ctx.load_verify_file(ca_file);
  ctx.set_verify_mode(ssl::verify_peer);
  if (!cert.empty()) {
    ctx.use_certificate_chain_file(cert);
    ctx.use_private_key_file(key, ssl::context::pem);
  }
  ssl::stream<asio::ip::tcp::socket> stream(ioc, ctx);
  boost::system::error_code ec;
  stream.lowest_layer().connect({asio::ip::make_address("127.0.0.1"), port}, ec);
  if (ec) return std::nullopt;
  stream.handshake(ssl::stream_base::client, ec);
  if (ec) return std::nullopt;
  Result<std::vector<uint8_t>> frame = PackFramed(request);
  if (!frame.ok()) return std::nullopt;
  asio::write(stream, asio::buffer(*frame), ec);
  if (ec) return std::nullopt;
  uint8_t header[2];
  asio::read(stream, asio::buffer(header), ec);
  if (ec) return std::nullopt;
  std::vector<uint8_t> body((size_t{header[0]} << 8) | header[1]);
  asio::read(stream, asio::buffer(body), ec);
  if (ec) return std::nullopt;
  Result<Message> m = Unpack(body);
  if (!m.ok()) return std::nullopt;
  return std::move(m).value();
}

}  // namespace narae::switching::tls_test
