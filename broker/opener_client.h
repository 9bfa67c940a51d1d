// Owns the unprivileged server's half of privilege separation (docs/PRIVSEP.md): the channel
// to its root opener, the target handles made of what the opener sends (every descriptor
// checked again here), and the seams through which the catalog opens and re-resolves targets
// and the grant cache refreshes them. Never opens a target itself.
//
//   OpenerClient client(std::move(channel), config);           // generation 1
//   auto catalog = Catalog::Open(std::move(config), client.Opener());
//   server.set_resolver(client.BackgroundResolver());           // oci, from the loop
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

#include "catalog.h"
#include "lifecycle.h"
#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"
#include "privsep_protocol.h"
#include "target_table.h"

namespace nsbroker {

// How long the server waits for a reply: the opener answers at once, but opening an oci
// target runs the container runtime (at most its timeout_ms).
inline constexpr std::chrono::seconds kOpenerReplyTimeout{10};

// A reload the opener offers: the config bytes it parsed, and the new audit file if any.
struct ReloadOffer {
  std::uint64_t generation = 0;
  std::string text;
  UniqueFd audit;
};

// Makes the jail target of what the opener resolved (targets.h AdoptJail; tests of the jail
// logic pass one over a fake JailSystem).
using JailAdopter =
    std::function<Result<TargetHandlePtr>(std::int32_t jid, std::string name, UniqueFd descriptor)>;

class OpenerClient {
 public:
  // Serving `config` as generation 1 (what the server forked with).
  OpenerClient(UniqueFd channel, const Config& config, JailAdopter adopt_jail = AdoptJail);
  OpenerClient(const OpenerClient&) = delete;
  OpenerClient& operator=(const OpenerClient&) = delete;

  // The catalog's opener: kOpen for the target's index (and so re-resolution).
  TargetOpener Opener();
  // The lifecycle's resolver for targets resolved in the background (oci): the same kOpen,
  // from the loop's next turn.
  Resolver BackgroundResolver();

  // From now on, requests name targets of `config` as `generation` (after kSwitched).
  void Serve(std::uint64_t generation, const Config& config);
  void Switched(std::uint64_t generation, privsep::SwitchStatus status);
  void Ready(std::uint32_t status, const std::uint64_t (&numbers)[privsep::kNumbers]);
  // Fresh descriptors of `kinds` of target `name` (kFetch), each checked.
  [[nodiscard]] Result<std::vector<EntryFd>> Fetch(const std::string& name, KindSet kinds);

  // What the opener sent unasked, when the channel is readable: a reload, nothing (EAGAIN),
  // or an error once the opener is gone or broke the protocol (then the server must stop).
  [[nodiscard]] Result<std::optional<ReloadOffer>> Receive();
  // A reload that arrived while a call waited for its reply; `on_stashed` is told when one does.
  std::optional<ReloadOffer> TakeStashed();
  void set_on_stashed(std::function<void()> on_stashed) { on_stashed_ = std::move(on_stashed); }
  // Told once when the channel fails: the opener is gone, silent, or broke the protocol.
  void set_lost(std::function<void(const std::string&)> lost) { lost_ = std::move(lost); }
  int fd() const { return channel_.get(); }

 private:
  struct Answer {
    privsep::Reply reply;
    std::vector<UniqueFd> fds;
  };
  [[nodiscard]] Result<Answer> Call(privsep::Request request, std::chrono::milliseconds timeout);
  // Reads one message; a reload is returned as Offer, anything else as the reply.
  [[nodiscard]] Result<std::variant<Answer, ReloadOffer>> ReadOne();
  [[nodiscard]] Result<TargetHandlePtr> Open(const TargetSpec& spec);
  [[nodiscard]] Result<TargetHandlePtr> Adopt(const TargetSpec& spec, Answer answer);
  std::unexpected<Error> Lost(const std::string& why);
  Result<std::uint32_t> IndexOf(const std::string& name) const;

  UniqueFd channel_;
  JailAdopter adopt_jail_;
  std::uint64_t generation_ = 1;
  std::unordered_map<std::string, std::uint32_t> index_;  // target name -> index in generation_
  std::uint64_t seq_ = 0;
  bool lost_already_ = false;
  std::optional<ReloadOffer> stashed_;
  std::function<void()> on_stashed_;
  std::function<void(const std::string&)> lost_;
};

}  // namespace nsbroker
