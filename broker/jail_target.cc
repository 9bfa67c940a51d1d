#include "jail_target.h"

#include <fcntl.h>

#include <algorithm>
#include <charconv>
#include <limits>

namespace nsbroker {
namespace {

// MAXHOSTNAMELEN (256) bounds a jail name in the kernel, NUL included.
constexpr std::size_t kMaxJailName = 255;

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == ':' || c == '@';
}

class JailTarget : public TargetHandle {
 public:
  JailTarget(JailSystemPtr system, std::int32_t jid, std::string name, UniqueFd held)
      : system_(std::move(system)), jid_(jid), name_(std::move(name)), held_(std::move(held)) {}

  // A jail exposes only JAIL, so the handler never asks a jail target for namespaces.
  Result<std::vector<EntryFd>> Open(KindSet kinds) const override {
    if (kinds == 0) return std::vector<EntryFd>{};
    return MakeError(ErrorCode::kInternal, DescribeJail(jid_, name_) + " has no namespaces");
  }
  int watch_fd() const override { return -1; }
  std::string GoneReason() const override { return DescribeJail(jid_, name_) + " was removed"; }

  Result<JailEntry> OpenJail(bool descriptor) const override {
    if (auto alive = CheckSameJail(); !alive) return std::unexpected(std::move(alive.error()));
    JailEntry entry{.jid = jid_, .name = name_, .descriptor = {}};
    if (descriptor && held_.valid()) {
      // A duplicate of the held descriptor refers to the very jail resolved at start-up, and
      // keeps working after a run_as drop (a new one made by a non-root broker would carry
      // no privilege: the kernel checks the descriptor creator's).
      entry.descriptor = UniqueFd(fcntl(held_.get(), F_DUPFD_CLOEXEC, 0));
      if (!entry.descriptor.valid()) {
        return SysError("dup the descriptor of " + DescribeJail(jid_, name_));
      }
    }
    return entry;
  }

 private:
  // Held descriptor: the jail it refers to is alive (it can never refer to another). Without
  // one: the jid still carries the recorded name, so a removed jail whose jid was reused by
  // another jail is not served under the old name.
  Result<void> CheckSameJail() const {
    if (held_.valid()) {
      auto jid = system_->DescriptorJid(held_);
      if (!jid && jid.error().code == ErrorCode::kNotFound) return Gone(jid.error());
      // Any other refusal (the descriptor's mode may deny jail_get to a broker that dropped
      // root with run_as) falls back to the check by name.
      if (!jid) return CheckName();
      if (*jid != jid_) {
        return MakeError(ErrorCode::kInternal, "the descriptor of " + DescribeJail(jid_, name_) +
                                                   " now reports jid " + std::to_string(*jid));
      }
      return {};
    }
    return CheckName();
  }

  Result<void> CheckName() const {
    auto name = system_->FindName(jid_);
    if (!name) return Gone(name.error());
    if (*name != name_) {
      return MakeError(ErrorCode::kUnavailable,
                       "jid " + std::to_string(jid_) + " now names jail '" + *name + "', not '" +
                           name_ + "' (the jail was removed; reload the broker)");
    }
    return {};
  }

  std::unexpected<Error> Gone(const Error& error) const {
    if (error.code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kUnavailable, GoneReason());
    }
    return std::unexpected(
        Error{error.code, error.sys_errno, DescribeJail(jid_, name_) + ": " + error.message});
  }

  JailSystemPtr system_;
  std::int32_t jid_;
  std::string name_;
  UniqueFd held_;  // non-owning jail descriptor; invalid before FreeBSD 15
};

}  // namespace

Result<JailRef> ParseJailRef(std::string_view text) {
  if (text.empty()) return MakeError(ErrorCode::kInvalidRequest, "jail must name a jail or a jid");
  if (std::all_of(text.begin(), text.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    std::uint64_t value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec != std::errc() || end != text.data() + text.size() ||
        value > static_cast<std::uint64_t>(std::numeric_limits<std::int32_t>::max())) {
      return MakeError(ErrorCode::kInvalidRequest,
                       "jail jid " + std::string(text) + " is out of range");
    }
    if (value == 0) {
      return MakeError(ErrorCode::kInvalidRequest, "jail jid 0 is the host, not a jail");
    }
    return JailRef{.jid = static_cast<std::int32_t>(value), .name = {}};
  }
  if (text.size() > kMaxJailName || !std::all_of(text.begin(), text.end(), NameChar)) {
    return MakeError(ErrorCode::kInvalidRequest,
                     "jail name '" + std::string(text.substr(0, 64)) +
                         "' must be at most 255 characters of [A-Za-z0-9._:@-] (or a jid)");
  }
  return JailRef{.jid = std::nullopt, .name = std::string(text)};
}

std::string DescribeJail(std::int32_t jid, std::string_view name) {
  if (name.empty()) return "jail jid " + std::to_string(jid);
  return "jail '" + std::string(name) + "' (jid " + std::to_string(jid) + ")";
}

Result<TargetHandlePtr> OpenJailTarget(const TargetSpec& spec, JailSystemPtr system) {
  auto ref = ParseJailRef(spec.file);
  if (!ref) return std::unexpected(std::move(ref.error()));
  std::int32_t jid = 0;
  if (ref->jid) {
    jid = *ref->jid;
  } else {
    auto found = system->FindId(ref->name);
    if (!found) {
      if (found.error().code == ErrorCode::kNotFound) {
        return MakeError(ErrorCode::kUnavailable, "no jail named '" + ref->name + "'");
      }
      return std::unexpected(std::move(found.error()));
    }
    jid = *found;
  }
  // By jid: learn the name. By name: the jid just found must carry that name, which also
  // catches a jail_getid that read the name some other way.
  auto name = system->FindName(jid);
  if (!name) {
    if (name.error().code == ErrorCode::kNotFound) {
      return MakeError(ErrorCode::kUnavailable,
                       ref->jid ? "no jail has jid " + std::to_string(jid)
                                : "jail '" + ref->name + "' disappeared while being resolved");
    }
    return std::unexpected(std::move(name.error()));
  }
  if (!ref->jid && *name != ref->name) {
    return MakeError(ErrorCode::kUnavailable, "jail '" + ref->name + "' resolved to jid " +
                                                  std::to_string(jid) + ", which names '" + *name +
                                                  "'");
  }
  // After a run_as drop a new descriptor would carry the unprivileged credential and every root
  // peer's jail_attach_jd would fail: hold none, and root attaches by jid (with the name
  // check) as on FreeBSD 14. Descriptors made while root stay with the handles that hold them;
  // with privilege separation the root opener makes them (AdoptJailTarget).
  auto descriptor = system->RunsAsRoot() ? system->NewDescriptor(jid)
                                         : Result<std::optional<UniqueFd>>(std::nullopt);
  if (!descriptor) {
    Error e = std::move(descriptor.error());
    e.message = "jail descriptor of " + DescribeJail(jid, *name) + ": " + e.message;
    return std::unexpected(std::move(e));
  }
  UniqueFd held = descriptor->has_value() ? std::move(**descriptor) : UniqueFd();
  if (held.valid()) {
    // Taken by jid after the name was read: it must refer to the jail that carries that name
    // now (a jid is unique among live jails, and a descriptor never changes jail).
    auto held_jid = system->DescriptorJid(held);
    auto again = system->FindName(jid);
    if (!held_jid || *held_jid != jid || !again || *again != *name) {
      return MakeError(ErrorCode::kUnavailable,
                       DescribeJail(jid, *name) + " changed while being resolved");
    }
  }
  TargetHandlePtr target =
      std::make_unique<JailTarget>(std::move(system), jid, std::move(*name), std::move(held));
  return target;
}

Result<TargetHandlePtr> AdoptJailTarget(JailSystemPtr system, std::int32_t jid, std::string name,
                                        UniqueFd held) {
  auto now = system->FindName(jid);
  if (!now || *now != name) {
    return MakeError(ErrorCode::kUnavailable,
                     DescribeJail(jid, name) + " changed after the opener resolved it");
  }
  if (held.valid()) {
    // A refusal (the descriptor's mode may deny jail_get to the unprivileged server) leaves
    // the check by name, as JailTarget does at every grant.
    auto held_jid = system->DescriptorJid(held);
    if (held_jid && *held_jid != jid) {
      return MakeError(ErrorCode::kInvalidRequest, "the opener's descriptor of " +
                                                       DescribeJail(jid, name) + " reports jid " +
                                                       std::to_string(*held_jid));
    }
  }
  TargetHandlePtr target =
      std::make_unique<JailTarget>(std::move(system), jid, std::move(name), std::move(held));
  return target;
}

}  // namespace nsbroker
