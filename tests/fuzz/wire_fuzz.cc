// Fuzzes the native codec as both ends run it: one datagram through a real SEQPACKET pair
// into ReceiveDatagram, then DecodeRequest and DecodeResponse. Must never crash or leak.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "wire.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view bytes(reinterpret_cast<const char*>(data), size);
  static auto pair = nsbroker::SeqpacketPair();
  if (!pair) return 0;
  nsbroker::Result<nsbroker::Datagram> got = nsbroker::MakeError(nsbroker::ErrorCode::kInternal, "");
  if (nsbroker::SendDatagram(pair->first, bytes)) {
    got = nsbroker::ReceiveDatagram(pair->second, 0);
    if (got) bytes = got->bytes;
  }
  (void)nsbroker::DecodeRequest(bytes);
  // The first byte stands for how many descriptors rode along.
  std::size_t fd_count = size > 0 ? data[0] % 8 : 0;
  (void)nsbroker::DecodeResponse(bytes, fd_count);
  return 0;
}
