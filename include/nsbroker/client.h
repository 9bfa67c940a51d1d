// libnsjoin's connection to a broker: connect (checking who serves the socket), ask for a
// grant or the target list. Owns the socket and every descriptor it receives.
//
//   auto client = nsbroker::Client::Connect("/run/nsbroker/nsbroker.sock");
//   if (!client) return Fail(client.error());
//   auto grant = client->Join("web1", {nsbroker::NsKind::kNet, nsbroker::NsKind::kUts});
//   if (!grant) return Fail(grant.error());  // e.g. PERMISSION_DENIED with the broker's reason
//   auto entered = nsbroker::Enter(*grant);   // join.h
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "nsbroker/error.h"
#include "nsbroker/ns_kind.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// One thing a grant lets its holder enter. `fd` is checked by the client before it is
// handed out: NS_GET_NSTYPE matches `kind` for namespaces, a directory for ROOT/CWD.
struct GrantEntry {
  NsKind kind{};
  UniqueFd fd;               // invalid only for a jail granted by jid
  std::uint64_t inode = 0;   // nsfs inode (st_ino)
  std::uint64_t device = 0;  // st_dev
  std::uint64_t ns_id = 0;   // NS_GET_ID where the kernel has it, else 0
  std::int32_t jid = 0;      // JAIL only
  std::string jail_name;     // JAIL only
};

struct Grant {
  std::string target;
  std::vector<GrantEntry> entries;

  // The entry of that kind, or nullptr.
  const GrantEntry* Find(NsKind kind) const;
};

struct TargetInfo {
  std::string name;
  std::vector<NsKind> kinds;
  // Root's list only: a target that cannot be joined now, and why.
  bool available = true;
  std::string reason;
};

// The broker's Status answer (root only): counters since it started and each target's state.
struct BrokerStatus {
  struct Target {
    std::string name;
    bool available = false;
    std::string reason;  // why it is unavailable
  };
  std::uint64_t uptime_ms = 0;
  std::uint64_t grants = 0;
  std::uint64_t denials = 0;
  std::uint64_t errors = 0;
  std::uint64_t connections = 0;  // accepted since start
  std::uint64_t active_connections = 0;
  std::vector<Target> targets;
};

struct ClientOptions {
  // Uids allowed to serve the socket, checked with SO_PEERCRED at connect: a user must not
  // be able to stand up a fake broker. Root is always trusted.
  std::vector<uid_t> trusted_server_uids;
  // How long to wait for the broker's answer (SO_RCVTIMEO/SO_SNDTIMEO); then kUnavailable.
  std::chrono::milliseconds timeout{10000};
};

class Client {
 public:
  [[nodiscard]] static Result<Client> Connect(const std::string& socket_path,
                                              const ClientOptions& options = {});

  // Asks for `kinds` of `target`. Naming no namespace kind (empty, or only kRoot/kCwd) asks for
  // every namespace the broker lets this peer have; kRoot and kCwd come only when named.
  // The broker's Error comes back with its code and message. Error messages name the
  // object that failed, not the target: callers prefix "target 'NAME': ".
  [[nodiscard]] Result<Grant> Join(std::string_view target, std::span<const NsKind> kinds = {});

  // Every target this peer may join, asking page after page (one answer fits 64 KiB).
  [[nodiscard]] Result<std::vector<TargetInfo>> List();

  // The broker's counters and target states; kPermissionDenied unless the caller is root.
  [[nodiscard]] Result<BrokerStatus> Status();

  // The uid SO_PEERCRED reported for the broker.
  uid_t server_uid() const { return server_uid_; }

 private:
  Client(UniqueFd sock, uid_t server_uid) : sock_(std::move(sock)), server_uid_(server_uid) {}
  UniqueFd sock_;
  uid_t server_uid_ = 0;
};

}  // namespace nsbroker
