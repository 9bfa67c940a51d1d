// Fuzzes the native codec as both ends run it: one datagram, with real descriptors, through
// a SEQPACKET pair into ReceiveDatagram (its limits on bytes and descriptors), then
// DecodeRequest and DecodeResponse. Must never crash or leak; what decodes must survive
// SendMessage and decode to the same message again, and error codes must map back.
//   input: [fds] [limits] [datagram bytes...]
//   fds: low 4 bits, descriptors sent along (this process's namespaces, /dev/null);
//        high 4 bits, the receiver's max_fds
//   limits: bit 7 set, the receiver's max_bytes is bits 0-5, else 64 KiB; bit 6: the
//   receiver has SO_PASSCRED (credentials arrive as a second kind of control message)
#include <fcntl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include "google/protobuf/stubs/logging.h"
#include "wire.h"

namespace {

constexpr std::array<const char*, 4> kPoolPaths = {"/proc/self/ns/net", "/proc/self/ns/uts",
                                                   "/proc/self/ns/mnt", "/dev/null"};

[[noreturn]] void Violation(const std::string& what) {
  std::fprintf(stderr, "wire_fuzz invariant violated: %s\n", what.c_str());
  std::abort();
}

// Sends `message` through the pair and decodes it again: the same bytes must come back.
template <class Message, class Decode>
void RoundTrip(const std::pair<nsbroker::UniqueFd, nsbroker::UniqueFd>& pair,
               const Message& message, Decode decode) {
  if (message.ByteSizeLong() > nsbroker::kMaxMessageSize) return;
  if (!nsbroker::SendMessage(pair.first, message)) Violation("SendMessage of a decoded message");
  auto got = nsbroker::ReceiveDatagram(pair.second, 0);
  if (!got) Violation("receiving a sent message: " + got.error().message);
  auto again = decode(got->bytes);
  if (!again || again->SerializeAsString() != message.SerializeAsString()) {
    Violation("a decoded message does not survive the round trip");
  }
}

}  // namespace

// protobuf logs every string field with invalid UTF-8 to stderr; at fuzzing rates that
// is most of the run time, and says nothing the decoder's result does not.
extern "C" int LLVMFuzzerInitialize(int*, char***) {
  google::protobuf::SetLogHandler(nullptr);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace nsbroker;
  static auto pair = SeqpacketPair();
  static auto passcred_pair = [] {
    auto p = SeqpacketPair();
    int on = 1;
    if (p && setsockopt(p->second.get(), SOL_SOCKET, SO_PASSCRED, &on, sizeof on) != 0) {
      Violation("SO_PASSCRED");
    }
    return p;
  }();
  static const std::vector<int> pool = [] {
    std::vector<int> fds;
    for (const char* path : kPoolPaths) fds.push_back(open(path, O_RDONLY | O_CLOEXEC));
    return fds;
  }();
  if (!pair || !passcred_pair) Violation("socketpair");
  if (size < 2) return 0;
  std::vector<int> send;
  for (std::size_t i = 0; i < (data[0] & 15u); ++i) send.push_back(pool[i % pool.size()]);
  const std::size_t max_fds = data[0] >> 4;
  const std::size_t max_bytes = (data[1] & 0x80) != 0 ? data[1] & 0x3fu : kMaxMessageSize;
  const auto& [sender, receiver] = (data[1] & 0x40) != 0 ? *passcred_pair : *pair;
  std::string_view bytes(reinterpret_cast<const char*>(data) + 2, size - 2);

  std::size_t fd_count = send.size();
  Result<Datagram> got = MakeError(ErrorCode::kInternal, "not sent");
  if (SendDatagram(sender, bytes, send)) {
    got = ReceiveDatagram(receiver, max_fds, max_bytes);
    if (got) {
      if (got->fds.size() != send.size() || got->bytes != bytes) Violation("datagram changed");
      fd_count = got->fds.size();
    } else if (got.error().message.empty()) {
      Violation("receive error without a message");
    }
    // A refused datagram is gone from the socket too: the next one must start clean.
  } else if (bytes.size() <= kMaxMessageSize) {
    Violation("a datagram within limits was not sent");
  }

  if (auto request = DecodeRequest(bytes)) {
    RoundTrip(*pair, *request, [](std::string_view b) { return DecodeRequest(b); });
  }
  if (auto response = DecodeResponse(bytes, fd_count)) {
    if (fd_count == 0) {
      RoundTrip(*pair, *response, [](std::string_view b) { return DecodeResponse(b, 0); });
    }
    if (response->has_error()) {
      ErrorCode code = ErrorCodeFromWire(response->error().code());
      if (ErrorCodeFromWire(ErrorCodeToWire(code)) != code) Violation("error code mapping");
      if (!ErrorResponse(Error{code, 0, "x"}).has_error()) Violation("ErrorResponse");
    }
  }
  return 0;
}
