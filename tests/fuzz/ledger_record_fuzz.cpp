// libFuzzer target for the ledger's record decoding (ledger/codec.hpp): a
// corrupted or hostile record read back from disk must be refused, never
// crash. When a record decodes, encoding it again and decoding that must
// give the same record.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "ledger/codec.hpp"

using namespace narae::ledger;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  codec::Event e;
  if (codec::DecodeEvent(in, &e)) {
    std::string again;
    codec::EncodeEvent(e, &again);
    codec::Event e2;
    if (!codec::DecodeEvent(again, &e2) || e2.kind != e.kind) std::abort();
    if (e.kind == codec::EventKind::kTransfer && !(e2.transfer == e.transfer)) std::abort();
    if (e.kind == codec::EventKind::kAccountCreated && !(e2.account == e.account)) std::abort();
  }
  Account a;
  if (codec::DecodeAccount(in, &a)) {
    Account b;
    if (!codec::DecodeAccount(codec::EncodeAccount(a), &b) || !(a == b)) std::abort();
  }
  codec::Meta m;
  (void)codec::DecodeMeta(in, &m);
  JournalEntry j;
  if (codec::DecodeJournal(in, &j)) {
    JournalEntry k;
    if (!codec::DecodeJournal(codec::EncodeJournal(j), &k) || k.hash != j.hash) std::abort();
  }
  return 0;
}
