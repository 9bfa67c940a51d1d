// Owns the privilege-separation protocol between the root opener (opener.h) and the
// unprivileged server (opener_client.h): fixed-size binary messages, one per SOCK_SEQPACKET
// datagram of their socketpair, descriptors as SCM_RIGHTS. No protobuf, no free-form text
// from the server; docs/PRIVSEP.md describes the table.
//
//   privsep::Request r{.op = privsep::Op::kOpen, .index = 3, .generation = 1};
//   SendDatagram(channel, privsep::Bytes(r));
//   auto reply = privsep::Decode<privsep::Reply>(datagram.bytes);   // nullopt: not one
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace nsbroker::privsep {

inline constexpr std::uint32_t kMagic = 0x6e736270;  // "nsbp"
inline constexpr std::uint32_t kVersion = 1;

enum class Op : std::uint32_t {
  // server -> opener, each answered by one Reply of the same op and seq:
  kOpen = 1,   // open target `index` of `generation`, or open it again (re-resolution)
  kFetch = 2,  // fresh descriptors of `kinds` (within its expose) of target `index`: a refresh
  // server -> opener, not answered:
  kSwitched = 3,  // the server serves `generation` now (status kAccepted) or refused it
  kReady = 4,     // serving (status kStarted) or a reload's targets opened (kReloaded)
  // opener -> server, unsolicited: a reload. Descriptor 0 is a sealed memfd with the config
  // bytes the opener parsed; descriptor 1, with kAuditFile, the new audit log file.
  kReload = 16,
};

// kSwitched's status.
enum class SwitchStatus : std::uint32_t {
  kAccepted = 0,
  kUnparsable = 1,  // the bytes did not parse in the server (never expected: the same parser)
  kOverBudget = 2,  // the new config does not fit the server's descriptor budget
  kAuditLog = 3,    // the server could not take the new audit log
};
// kReady's status.
inline constexpr std::uint32_t kStarted = 0;
inline constexpr std::uint32_t kReloaded = 1;

// kReady's numbers: what STATUS= says (service.h StatusText).
enum Number : std::size_t {
  kTargets,
  kAvailable,
  kGrants,
  kDenials,
  kErrors,
  kConnections,
  kNumbers
};

struct Request {
  std::uint32_t magic = kMagic;
  std::uint32_t version = kVersion;
  Op op = Op::kOpen;
  std::uint32_t index = 0;  // kOpen, kFetch: the target's position in its config
  std::uint64_t seq = 0;    // kOpen, kFetch: echoed by the reply
  std::uint64_t generation = 0;
  std::uint32_t kinds = 0;   // kFetch: a KindSet
  std::uint32_t status = 0;  // kSwitched: SwitchStatus; kReady: kStarted or kReloaded
  std::uint64_t numbers[kNumbers] = {};
};

// At most this many descriptors in one reply: a pidfd, or every kind of a held target.
inline constexpr std::size_t kMaxEntries = 12;
inline constexpr std::size_t kTextSize = 512;

// Reply flags.
inline constexpr std::uint32_t kPidfd = 1;      // descriptor 0 is the target's pidfd, of `pid`
inline constexpr std::uint32_t kHeld = 2;       // the descriptors are the target's held set
inline constexpr std::uint32_t kJailFlag = 4;   // a jail: jid and name (text), maybe a descriptor
inline constexpr std::uint32_t kAuditFile = 8;  // kReload: descriptor 1 is the audit log

struct Reply {
  std::uint32_t magic = kMagic;
  std::uint32_t version = kVersion;
  Op op = Op::kOpen;
  std::uint32_t index = 0;
  std::uint64_t seq = 0;
  std::uint64_t generation = 0;
  std::uint32_t error = 0;  // 0: success; else 1 + ErrorCode, with the reason in `text`
  std::int32_t sys_errno = 0;
  std::int32_t pid = 0;
  std::int32_t jid = 0;
  std::uint32_t flags = 0;
  std::uint32_t count = 0;               // descriptors that ride on the datagram
  std::uint8_t kinds[kMaxEntries] = {};  // NsKind of each descriptor, in order
  char text[kTextSize] = {};             // NUL-terminated: error reason, jail name, Resolved()
};

static_assert(std::is_trivially_copyable_v<Request> && std::is_trivially_copyable_v<Reply>);

template <class T>
std::string_view Bytes(const T& message) {
  return {reinterpret_cast<const char*>(&message), sizeof message};
}

// A message of exactly T's size, magic and version; nullopt for anything else.
template <class T>
std::optional<T> Decode(std::string_view bytes) {
  if (bytes.size() != sizeof(T)) return std::nullopt;
  T message;
  std::memcpy(&message, bytes.data(), sizeof message);
  if (message.magic != kMagic || message.version != kVersion) return std::nullopt;
  return message;
}

// Copies `text` into a reply's text, cut to fit and NUL-terminated.
inline void SetText(Reply& reply, std::string_view text) {
  std::size_t n = std::min(text.size(), kTextSize - 1);
  std::memcpy(reply.text, text.data(), n);
  reply.text[n] = '\0';
}

// A reply's text, which the server reads up to the first NUL or the end of the field.
inline std::string Text(const Reply& reply) {
  return std::string(reply.text, strnlen(reply.text, kTextSize));
}

}  // namespace nsbroker::privsep
