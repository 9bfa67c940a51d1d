#include "opener_client.h"

#include <fcntl.h>
#include <poll.h>
#include <sys/stat.h>
#include <unistd.h>

#include "loop.h"
#include "sealed_memfd.h"
#include "wire.h"

namespace nsbroker {
namespace {

using Clock = std::chrono::steady_clock;

// Process targets: the opener's pidfd tells this server when the process exits; descriptors
// are fetched from the opener (kFetch), through the grant cache, at most every refresh_ms.
class RemoteProcess : public TargetHandle {
 public:
  RemoteProcess(OpenerClient& client, std::string name, pid_t pid, UniqueFd pidfd,
                std::string resolved)
      : client_(client),
        name_(std::move(name)),
        pid_(pid),
        pidfd_(std::move(pidfd)),
        resolved_(std::move(resolved)) {}
  Result<std::vector<EntryFd>> Open(KindSet kinds) const override {
    return client_.Fetch(name_, kinds);
  }
  int watch_fd() const override { return pidfd_.get(); }
  std::string GoneReason() const override { return "process " + std::to_string(pid_) + " exited"; }
  pid_t pid() const override { return pid_; }
  std::string Resolved() const override { return resolved_; }

 private:
  OpenerClient& client_;
  std::string name_;
  pid_t pid_;
  UniqueFd pidfd_;
  std::string resolved_;
};

// A background resolution through the opener: its kOpen runs on the loop's next turn, so
// that `done` never runs inside StartResolving (lifecycle.h). Abandoned when destroyed.
class DeferredOpen : public Resolution {
 public:
  DeferredOpen(event_base* base, std::function<void()> run)
      : event_(base, -1, 0, [run = std::move(run)](short) { run(); }) {
    event_.Add(std::chrono::milliseconds(0));
  }

 private:
  Event event_;
};

// The descriptors of a reply, each checked to be what its kind says (targets.h VerifyEntry),
// and together exactly one of each kind in `kinds`.
Result<std::vector<EntryFd>> CheckEntries(const privsep::Reply& reply, std::vector<UniqueFd> fds,
                                          KindSet kinds, const std::string& what) {
  std::vector<EntryFd> out;
  KindSet seen = 0;
  for (std::size_t i = 0; i < fds.size(); ++i) {
    std::uint8_t number = reply.kinds[i];
    KindSet bit = number >= 1 && number <= static_cast<std::uint8_t>(NsKind::kCgroupDir)
                      ? KindBit(static_cast<NsKind>(number))
                      : 0;
    if (bit == 0 || (seen & bit) != 0 || (kinds & bit) == 0) {
      return MakeError(ErrorCode::kInternal,
                       what + ": a descriptor of kind " + std::to_string(number));
    }
    seen |= bit;
    auto entry = VerifyEntry(static_cast<NsKind>(number), std::move(fds[i]), what);
    if (!entry) return std::unexpected(std::move(entry.error()));
    out.push_back(std::move(*entry));
  }
  if (seen != kinds) return MakeError(ErrorCode::kInternal, what + ": not every kind asked for");
  return out;
}

Error ReplyError(const privsep::Reply& reply) {
  auto code = reply.error - 1 <= static_cast<std::uint32_t>(ErrorCode::kInternal)
                  ? static_cast<ErrorCode>(reply.error - 1)
                  : ErrorCode::kInternal;
  return Error{code, reply.sys_errno, privsep::Text(reply)};
}

}  // namespace

OpenerClient::OpenerClient(UniqueFd channel, const Config& config, JailAdopter adopt_jail)
    : channel_(std::move(channel)), adopt_jail_(std::move(adopt_jail)) {
  fcntl(channel_.get(), F_SETFL, fcntl(channel_.get(), F_GETFL) | O_NONBLOCK);
  Serve(1, config);
}

void OpenerClient::Serve(std::uint64_t generation, const Config& config) {
  generation_ = generation;
  index_.clear();
  for (std::size_t i = 0; i < config.targets.size(); ++i) {
    index_.emplace(config.targets[i].name, static_cast<std::uint32_t>(i));
  }
}

TargetOpener OpenerClient::Opener() {
  return [this](const TargetSpec& spec) { return Open(spec); };
}

Resolver OpenerClient::BackgroundResolver() {
  return [this](event_base* base, const TargetSpec& spec,
                ResolveDone done) -> Result<std::unique_ptr<Resolution>> {
    return std::make_unique<DeferredOpen>(base, [this, &spec, done] { done(Open(spec)); });
  };
}

std::unexpected<Error> OpenerClient::Lost(const std::string& why) {
  if (!lost_already_) {
    lost_already_ = true;
    channel_.reset();
    if (lost_) lost_(why);
  }
  return MakeError(ErrorCode::kUnavailable, "the opener is gone: " + why);
}

Result<std::uint32_t> OpenerClient::IndexOf(const std::string& name) const {
  auto it = index_.find(name);
  if (it == index_.end()) {
    return MakeError(ErrorCode::kInternal, "target '" + name + "' is not in the served config");
  }
  return it->second;
}

Result<std::variant<OpenerClient::Answer, ReloadOffer>> OpenerClient::ReadOne() {
  auto datagram = ReceiveDatagram(channel_, privsep::kMaxEntries, sizeof(privsep::Reply));
  if (!datagram) {
    if (datagram.error().sys_errno == EAGAIN || datagram.error().sys_errno == EINTR) {
      return std::unexpected(datagram.error());
    }
    return Lost(datagram.error().message);
  }
  auto reply = privsep::Decode<privsep::Reply>(datagram->bytes);
  if (!reply || reply->count != datagram->fds.size()) return Lost("a malformed message");
  if (reply->op != privsep::Op::kReload) {
    return Answer{.reply = *reply, .fds = std::move(datagram->fds)};
  }
  bool audit = (reply->flags & privsep::kAuditFile) != 0;
  if (reply->generation != generation_ + 1 || datagram->fds.size() != (audit ? 2u : 1u)) {
    return Lost("a malformed reload");
  }
  auto text = ReadSealed(datagram->fds[0], kMaxConfigBytes, "the opener's config");
  if (!text) return Lost(text.error().message);
  ReloadOffer offer{.generation = reply->generation, .text = std::move(*text), .audit = {}};
  if (audit) offer.audit = std::move(datagram->fds[1]);
  return offer;
}

Result<OpenerClient::Answer> OpenerClient::Call(privsep::Request request,
                                                std::chrono::milliseconds timeout) {
  if (!channel_.valid()) return MakeError(ErrorCode::kUnavailable, "the opener is gone");
  request.seq = ++seq_;
  request.generation = generation_;
  // One request at a time, and nothing else is sent while it waits: the socket's queue has
  // room for it.
  if (auto sent = SendDatagram(channel_, privsep::Bytes(request)); !sent) {
    return Lost(sent.error().message);
  }
  auto deadline = Clock::now() + timeout;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return Lost("no reply within " + std::to_string(timeout.count()) + " ms");
    }
    pollfd p{channel_.get(), POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    auto message = ReadOne();
    if (!message) {
      if (!channel_.valid()) return std::unexpected(std::move(message.error()));
      continue;  // EAGAIN, EINTR
    }
    if (auto* offer = std::get_if<ReloadOffer>(&*message)) {
      // Crossed our request: served once this call is over.
      stashed_ = std::move(*offer);
      if (on_stashed_) on_stashed_();
      continue;
    }
    auto& answer = std::get<Answer>(*message);
    if (answer.reply.op != request.op || answer.reply.seq != request.seq ||
        answer.reply.index != request.index) {
      return Lost("a reply that answers another request");
    }
    return std::move(answer);
  }
}

Result<std::optional<ReloadOffer>> OpenerClient::Receive() {
  if (!channel_.valid()) return MakeError(ErrorCode::kUnavailable, "the opener is gone");
  auto message = ReadOne();
  if (!message) {
    if (!channel_.valid()) return std::unexpected(std::move(message.error()));
    return std::optional<ReloadOffer>();
  }
  if (auto* offer = std::get_if<ReloadOffer>(&*message)) {
    return std::optional<ReloadOffer>(std::move(*offer));
  }
  return Lost("a reply to no request");
}

std::optional<ReloadOffer> OpenerClient::TakeStashed() { return std::exchange(stashed_, {}); }

void OpenerClient::Switched(std::uint64_t generation, privsep::SwitchStatus status) {
  if (!channel_.valid()) return;
  privsep::Request request{.op = privsep::Op::kSwitched,
                           .generation = generation,
                           .status = static_cast<std::uint32_t>(status)};
  if (auto sent = SendDatagram(channel_, privsep::Bytes(request)); !sent) {
    (void)Lost(sent.error().message);
  }
}

void OpenerClient::Ready(std::uint32_t status, const std::uint64_t (&numbers)[privsep::kNumbers]) {
  if (!channel_.valid()) return;
  privsep::Request request{.op = privsep::Op::kReady, .generation = generation_, .status = status};
  std::copy(std::begin(numbers), std::end(numbers), std::begin(request.numbers));
  if (auto sent = SendDatagram(channel_, privsep::Bytes(request)); !sent) {
    (void)Lost(sent.error().message);
  }
}

Result<TargetHandlePtr> OpenerClient::Open(const TargetSpec& spec) {
  auto index = IndexOf(spec.name);
  if (!index) return std::unexpected(std::move(index.error()));
  auto timeout = std::chrono::milliseconds(kOpenerReplyTimeout);
  if (spec.source == SourceType::kOci) timeout += std::chrono::milliseconds(spec.oci.timeout_ms);
  auto answer = Call({.op = privsep::Op::kOpen, .index = *index}, timeout);
  if (!answer) return std::unexpected(std::move(answer.error()));
  return Adopt(spec, std::move(*answer));
}

Result<TargetHandlePtr> OpenerClient::Adopt(const TargetSpec& spec, Answer answer) {
  const privsep::Reply& reply = answer.reply;
  if (reply.error != 0) return std::unexpected(ReplyError(reply));
  const std::string what = "target '" + spec.name + "' from the opener";
  auto bad = [&](const std::string& why) {
    return MakeError(ErrorCode::kInternal, what + ": " + why);
  };
  if (reply.flags == privsep::kJailFlag && spec.source == SourceType::kJail) {
    if (answer.fds.size() > 1) return bad("more than a jail descriptor");
    return adopt_jail_(reply.jid, privsep::Text(reply),
                       answer.fds.empty() ? UniqueFd() : std::move(answer.fds[0]));
  }
  if (reply.flags == privsep::kPidfd && answer.fds.size() == 1) {
    // The pidfd must be one, of the process the opener says.
    auto pid = VerifyPidfd(answer.fds[0]);
    if (!pid) return std::unexpected(std::move(pid.error()));
    if (*pid != reply.pid) {
      return bad("its pidfd is of process " + std::to_string(*pid) + ", not " +
                 std::to_string(reply.pid));
    }
    TargetHandlePtr handle = std::make_unique<RemoteProcess>(
        *this, spec.name, *pid, std::move(answer.fds[0]), privsep::Text(reply));
    return handle;
  }
  if (reply.flags == privsep::kHeld) {
    auto entries = CheckEntries(reply, std::move(answer.fds), spec.expose, what);
    if (!entries) return std::unexpected(std::move(entries.error()));
    // self, netns and path targets: the set the opener opened, held for the target's life.
    return HoldEntries(std::move(*entries));
  }
  return bad("a reply of the wrong shape");
}

Result<std::vector<EntryFd>> OpenerClient::Fetch(const std::string& name, KindSet kinds) {
  auto index = IndexOf(name);
  if (!index) return std::unexpected(std::move(index.error()));
  auto answer = Call({.op = privsep::Op::kFetch, .index = *index, .kinds = kinds},
                     std::chrono::milliseconds(kOpenerReplyTimeout));
  if (!answer) return std::unexpected(std::move(answer.error()));
  const privsep::Reply& reply = answer->reply;
  if (reply.error != 0) return std::unexpected(ReplyError(reply));
  return CheckEntries(reply, std::move(answer->fds), kinds,
                      "target '" + name + "' from the opener");
}

}  // namespace nsbroker
