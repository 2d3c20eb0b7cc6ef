// Internals of the ISO 8583 server (switch/server.cpp) that tests reach:
// recovering enough of an undecodable message to answer it, and the
// server's latency histogram. The server itself is IsoServer (switch.hpp).
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "ledger/histogram.hpp"
#include "switch/iso8583.hpp"

namespace narae::switching {

// The I/O threads of a listener (ISO 8583 or HTTP): `threads` when set, else
// one per CPU listed in `io_cpus`, else one per core.
uint32_t IoThreadCount(uint32_t threads, const std::vector<uint32_t>& io_cpus);

// A lingering close (both listeners): FIN after the replies, then read and
// drop what the peer still sends, and close once the peer has acknowledged
// every byte (UnackedBytes is 0) or closed its side. A socket closed earlier
// throws its unsent bytes away with a reset when the peer sends anything
// more. UnackedBytes is polled every kLingerPollFirst, doubling up to
// kLingerPollMax; at most kLingerBytesMax bytes are dropped.
inline constexpr std::chrono::milliseconds kLingerPollFirst{2};
inline constexpr std::chrono::milliseconds kLingerPollMax{50};
inline constexpr uint64_t kLingerBytesMax = 1 << 20;

// Bytes written to the TCP socket `fd` and not yet acknowledged by the peer
// (SIOCOUTQ; a FIN counts as one); 0 on error.
int UnackedBytes(int fd);

// Reads and drops, without blocking, what the kernel holds for `fd`, adding
// the bytes to `*dropped_bytes`: kWouldBlock when nothing more is there,
// kEnded at the peer's FIN or a socket error, kOverBudget once
// *dropped_bytes passes kLingerBytesMax.
enum class DrainResult { kWouldBlock, kEnded, kOverBudget };
DrainResult DrainReceived(int fd, uint64_t* dropped_bytes);

// The MTI and STAN (field 11) of a body the codec rejected, when both can be
// read: the MTI is 4 digits, the bitmap and the fields before 11 are
// well-formed enough to skip, and field 11 is 6 digits. Pure.
struct RecoveredHeader {
  std::string mti;
  std::string stan;
};
std::optional<RecoveredHeader> RecoverHeader(std::span<const uint8_t> body);

// The response MTI for a request MTI: ResponseMti() for the ones Narae
// handles, else "MTI + 10" when the function digit (third) is even (a
// request or advice of another class); nullopt for a response MTI.
std::optional<std::string> AnswerMti(std::string_view request_mti);

// The format-error (30) or other server-generated answer: response MTI,
// field 11 when known, field 39.
Message ServerAnswer(std::string_view response_mti, std::string_view stan, ResponseCode code);

// The latency histogram of the metrics and the `stages` log line
// (ledger/histogram.hpp: ~6% resolution; Summarize(true) takes and resets).
using LatencyHistogram = ledger::LatencyHistogram;

}  // namespace narae::switching
