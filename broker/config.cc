#include "config.h"

#include <fcntl.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <set>
#include <unordered_map>

#include "jail_target.h"
#include "nsbroker.pb.h"
#include "nsbroker_config.pb.h"
#include "targets.h"

namespace nsbroker {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::TextFormat;

// Keeps the first syntax error; protobuf reports 0-based lines and columns.
class FirstError : public google::protobuf::io::ErrorCollector {
 public:
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    if (!error_) error_ = Found{{line + 1, column + 1}, message};
  }
  void AddWarning(int, google::protobuf::io::ColumnNumber, const std::string&) override {}
  struct Found {
    Location location;
    std::string message;
  };
  const std::optional<Found>& error() const { return error_; }

 private:
  std::optional<Found> error_;
};

// Field locations recorded by the parser, per message, so that semantic errors can point at
// the line and column of the value they are about.
class Where {
 public:
  Where(const TextFormat::ParseInfoTree* tree, const Descriptor* descriptor, Location fallback)
      : tree_(tree), descriptor_(descriptor), fallback_(fallback) {}

  // Location of `field` (index for repeated fields); the enclosing block if it is absent.
  Location Of(const char* field, int index = -1) const {
    const FieldDescriptor* f = descriptor_->FindFieldByName(field);
    if (tree_ == nullptr || f == nullptr) return fallback_;
    if (!f->is_repeated()) index = -1;
    // A list ("expose: [NET, PID]") records one location, at the field name, for all of its
    // values; so fall back to the nearest earlier value that has one.
    for (int i = index; i >= (index < 0 ? -1 : 0); --i) {
      auto loc = tree_->GetLocation(f, i);
      if (loc.line >= 0) return {loc.line + 1, loc.column + 1};
    }
    return fallback_;
  }
  // The nested message `field`[index], located at its own field name.
  Where Nested(const char* field, int index) const {
    const FieldDescriptor* f = descriptor_->FindFieldByName(field);
    return Where(tree_ == nullptr ? nullptr : tree_->GetTreeForNested(f, index), f->message_type(),
                 Of(field, index));
  }
  Location block() const { return fallback_; }

 private:
  const TextFormat::ParseInfoTree* tree_;
  const Descriptor* descriptor_;
  Location fallback_;
};

// Turns semantic errors into FILE:LINE:COL messages and resolves user and group names, each
// name once per load (NSS reads /etc/passwd per call; 10,000 targets may name the same group).
class Resolver {
 public:
  explicit Resolver(const std::string& file) : file_(file) {}

  std::unexpected<Error> Fail(Location at, const std::string& reason) const {
    return MakeError(ErrorCode::kInvalidRequest, WhereIn(file_, at) + reason);
  }

  struct User {
    uid_t uid;
    gid_t gid;
  };
  std::optional<User> LookupUser(const std::string& name) {
    auto it = users_.find(name);
    if (it != users_.end()) return it->second;
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    std::optional<User> user;
    if (getpwnam_r(name.c_str(), &pw, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
      user = User{found->pw_uid, found->pw_gid};
    }
    users_.emplace(name, user);
    return user;
  }

  std::optional<gid_t> LookupGroup(const std::string& name) {
    auto it = groups_.find(name);
    if (it != groups_.end()) return it->second;
    group gr{};
    group* found = nullptr;
    std::vector<char> buf(65536);
    std::optional<gid_t> gid;
    if (getgrnam_r(name.c_str(), &gr, buf.data(), buf.size(), &found) == 0 && found != nullptr) {
      gid = found->gr_gid;
    }
    groups_.emplace(name, gid);
    return gid;
  }

 private:
  const std::string& file_;
  std::unordered_map<std::string, std::optional<User>> users_;
  std::unordered_map<std::string, std::optional<gid_t>> groups_;
};

bool ValidTargetName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '@' || c == ':';
  });
}

// OCI container ids as runc and crun accept them; never starting with '-', which a runtime
// would take for an option.
bool ValidContainerId(const std::string& id) {
  if (id.empty() || id.size() > 1024 || id[0] == '-') return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '+';
  });
}

// A cgroup path: absolute, no empty, "." or ".." component, no trailing slash (but "/").
bool ValidCgroupPath(const std::string& path) {
  if (path.empty() || path[0] != '/' || path.size() > 4096) return false;
  if (path == "/") return true;
  std::size_t at = 1;
  while (at <= path.size()) {
    std::size_t end = path.find('/', at);
    if (end == std::string::npos) end = path.size();
    std::string_view part(path.data() + at, end - at);
    if (part.empty() || part == "." || part == "..") return false;
    at = end + 1;
  }
  return true;
}

// systemd's default placement of a system service: /system.slice/NAME.service, and an
// instance of a template (NAME@INSTANCE.service) under /system.slice/system-NAME.slice.
// Units with their own Slice= are not found here (nsbrokerd(8)); `cgroup` names them.
std::optional<std::string> UnitCgroup(const std::string& unit) {
  constexpr std::string_view kSuffix = ".service";
  if (unit.size() <= kSuffix.size() || unit.size() > 256 || !unit.ends_with(kSuffix)) {
    return std::nullopt;
  }
  bool ok = std::all_of(unit.begin(), unit.end(), [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
           c == '_' || c == '.' || c == '@' || c == ':' || c == '\\';
  });
  if (!ok || unit[0] == '@' || unit[0] == '.') return std::nullopt;
  std::size_t at = unit.find('@');
  if (at == std::string::npos) return "/system.slice/" + unit;
  std::string prefix = unit.substr(0, at);
  if (prefix.find('-') != std::string::npos) return std::nullopt;  // systemd nests slices by '-'
  return "/system.slice/system-" + prefix + ".slice/" + unit;
}

// Resolves one repeated Kind field into a set; UNSPECIFIED and JAIL-on-Linux are caught by the
// caller against the source's kinds.
Result<KindSet> KindsOf(const google::protobuf::RepeatedField<int>& kinds, const Where& where,
                        const char* field, const Resolver& r) {
  KindSet set = 0;
  for (int i = 0; i < kinds.size(); ++i) {
    auto kind = KindFromWire(kinds.Get(i));
    if (!kind) return r.Fail(where.Of(field, i), std::string(field) + ": kind must be named");
    set |= KindBit(*kind);
  }
  return set;
}

Result<RunAs> ResolveRunAs(const std::string& name, Location at, Resolver& r) {
  auto pw = r.LookupUser(name);
  if (!pw) return r.Fail(at, "run_as: unknown user '" + name + "'");
  RunAs out{.name = name, .uid = pw->uid, .gid = pw->gid};
  int n = 64;
  std::vector<gid_t> groups(static_cast<std::size_t>(n));
  while (getgrouplist(name.c_str(), pw->gid, groups.data(), &n) < 0) {
    groups.resize(static_cast<std::size_t>(n) * 2);
    n = static_cast<int>(groups.size());
  }
  groups.resize(static_cast<std::size_t>(n));
  out.groups = std::move(groups);
  return out;
}

Result<TargetSpec> ResolveTarget(const v1::Target& t, const Where& where, Resolver& r) {
  TargetSpec spec;
  spec.name = t.name();
  spec.location = where.block();
  if (t.has_refresh_ms()) spec.refresh_ms = t.refresh_ms();
  if (!ValidTargetName(t.name())) {
    return r.Fail(t.name().empty() ? where.block() : where.Of("name"),
                  "target name '" + t.name() + "' must be 1-64 characters of [A-Za-z0-9._@:-]");
  }
  const std::string quoted = "target '" + t.name() + "': ";
  bool has_oneof = t.source_case() != v1::Target::SOURCE_NOT_SET;
  if (has_oneof && t.path_size() > 0) {
    return r.Fail(where.Of("path", 0), quoted + "path cannot be combined with another source");
  }
  switch (t.source_case()) {
    case v1::Target::kSelf:
      if (!t.self()) return r.Fail(where.Of("self"), quoted + "self: false is not a source");
      spec.source = SourceType::kSelf;
      break;
    case v1::Target::kPid:
      if (t.pid() <= 0) return r.Fail(where.Of("pid"), quoted + "pid must be positive");
      spec.source = SourceType::kPid;
      spec.pid = t.pid();
      break;
    case v1::Target::kPidFile:
      if (t.pid_file().empty() || t.pid_file()[0] != '/') {
        return r.Fail(where.Of("pid_file"), quoted + "pid_file must be an absolute path");
      }
      spec.source = SourceType::kPidFile;
      spec.file = t.pid_file();
      break;
    case v1::Target::kNetns:
      if (t.netns().empty() || t.netns().find('/') != std::string::npos || t.netns() == "." ||
          t.netns() == "..") {
        return r.Fail(where.Of("netns"), quoted + "netns must be a name under /run/netns");
      }
      spec.source = SourceType::kNetns;
      spec.file = "/run/netns/" + t.netns();
      break;
    case v1::Target::kJail: {
      // A jail is a FreeBSD thing: say so, at the line, rather than "unsupported source".
      if (!SourceSupported(SourceType::kJail)) {
        return r.Fail(where.Of("jail"), quoted + "jail targets need FreeBSD");
      }
      auto ref = ParseJailRef(t.jail());
      if (!ref) return r.Fail(where.Of("jail"), quoted + ref.error().message);
      spec.source = SourceType::kJail;
      spec.file = t.jail();
      break;
    }
    case v1::Target::kOci: {
      const v1::OciSource& o = t.oci();
      Where ow = where.Nested("oci", -1);
      if (!ValidContainerId(o.id())) {
        return r.Fail(o.id().empty() ? ow.block() : ow.Of("id"),
                      quoted + "oci id '" + o.id() +
                          "' must be 1-1024 characters of [A-Za-z0-9_.+-], not starting with '-'");
      }
      spec.source = SourceType::kOci;
      spec.oci.id = o.id();
      if (!o.runtime().empty()) {
        const std::string& rt = o.runtime();
        bool name = std::all_of(rt.begin(), rt.end(), [](char c) {
          return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
        });
        if (!name && (rt[0] != '/' || rt.find("/../") != std::string::npos)) {
          return r.Fail(ow.Of("runtime"),
                        quoted + "oci runtime must be a name (runc, crun) or an absolute path");
        }
        spec.oci.runtime = rt;
      }
      if (!o.root().empty()) {
        if (o.root()[0] != '/') {
          return r.Fail(ow.Of("root"), quoted + "oci root must be an absolute path");
        }
        spec.oci.root = o.root();
      }
      if (o.timeout_ms() > 0) spec.oci.timeout_ms = o.timeout_ms();
      break;
    }
    case v1::Target::kCgroup:
      if (!ValidCgroupPath(t.cgroup())) {
        return r.Fail(where.Of("cgroup"),
                      quoted +
                          "cgroup must be an absolute path below the cgroup2 mount, "
                          "without '.' or '..' components");
      }
      spec.source = SourceType::kCgroup;
      spec.file = t.cgroup();
      break;
    case v1::Target::kUnit: {
      auto path = UnitCgroup(t.unit());
      if (!path) {
        return r.Fail(where.Of("unit"),
                      quoted + "unit '" + t.unit() + "' must be a system service, NAME.service");
      }
      spec.source = SourceType::kCgroup;
      spec.file = *path;
      break;
    }
    case v1::Target::SOURCE_NOT_SET:
      if (t.path_size() == 0) {
        return r.Fail(where.block(), quoted +
                                         "needs exactly one source: self, pid, pid_file, netns, "
                                         "jail, oci, cgroup, unit or path");
      }
      spec.source = SourceType::kPaths;
      for (int i = 0; i < t.path_size(); ++i) {
        const auto& p = t.path(i);
        Where pw = where.Nested("path", i);
        auto kind = KindFromWire(p.kind());
        if (!kind || !IsNamespaceKind(*kind)) {
          return r.Fail(pw.Of("kind"), quoted + "path needs a namespace kind");
        }
        if (p.file().empty() || p.file()[0] != '/') {
          return r.Fail(pw.Of("file"), quoted + "path file must be an absolute path");
        }
        for (const auto& [k, f] : spec.paths) {
          if (k == *kind) {
            return r.Fail(pw.Of("kind"), quoted + "two paths for " + std::string(KindName(k)));
          }
        }
        spec.paths.emplace_back(*kind, p.file());
      }
      break;
  }
  if (!SourceSupported(spec.source)) {
    return r.Fail(where.block(), quoted + "this platform cannot serve its source type");
  }
  KindSet possible = SourceKinds(spec);
  if (t.expose_size() > 0) {
    auto expose = KindsOf(t.expose(), where, "expose", r);
    if (!expose) return std::unexpected(std::move(expose.error()));
    for (int i = 0; i < t.expose_size(); ++i) {
      auto kind = static_cast<NsKind>(t.expose(i));
      if (!KindSetHas(possible, kind)) {
        return r.Fail(where.Of("expose", i),
                      quoted + "its source has no " + std::string(KindName(kind)) + " to expose");
      }
    }
    spec.expose = *expose;
  } else {
    spec.expose = possible & ~kExposedWhenNamed;
  }
  for (int i = 0; i < t.allow_size(); ++i) {
    const v1::Allow& a = t.allow(i);
    Where aw = where.Nested("allow", i);
    Rule rule;
    switch (a.who_case()) {
      case v1::Allow::kUser: {
        auto pw = r.LookupUser(a.user());
        if (!pw) return r.Fail(aw.Of("user"), quoted + "unknown user '" + a.user() + "'");
        rule = {Rule::Who::kUid, pw->uid, "user " + a.user()};
        break;
      }
      case v1::Allow::kUid:
        rule = {Rule::Who::kUid, a.uid(), "uid " + std::to_string(a.uid())};
        break;
      case v1::Allow::kGroup: {
        auto gid = r.LookupGroup(a.group());
        if (!gid) return r.Fail(aw.Of("group"), quoted + "unknown group '" + a.group() + "'");
        rule = {Rule::Who::kGid, *gid, "group " + a.group()};
        break;
      }
      case v1::Allow::kGid:
        rule = {Rule::Who::kGid, a.gid(), "gid " + std::to_string(a.gid())};
        break;
      case v1::Allow::WHO_NOT_SET:
        return r.Fail(aw.block(), quoted + "allow needs one of user, uid, group, gid");
    }
    if (a.kinds_size() > 0) {
      auto kinds = KindsOf(a.kinds(), aw, "kinds", r);
      if (!kinds) return std::unexpected(std::move(kinds.error()));
      for (int k = 0; k < a.kinds_size(); ++k) {
        auto kind = static_cast<NsKind>(a.kinds(k));
        if (!KindSetHas(spec.expose, kind)) {
          return r.Fail(aw.Of("kinds", k), quoted + "allow grants " + std::string(KindName(kind)) +
                                               ", which the target does not expose");
        }
      }
      rule.kinds = *kinds;
    } else {
      rule.kinds = spec.expose;
    }
    spec.rules.push_back(std::move(rule));
  }
  return spec;
}

}  // namespace

std::string WhereIn(const std::string& file, Location location) {
  if (location.line <= 0) return file + ": ";
  return file + ":" + std::to_string(location.line) + ":" + std::to_string(location.column) + ": ";
}

Result<Config> ParseConfig(std::string_view text, const std::string& file) {
  v1::BrokerConfig proto;
  TextFormat::Parser parser;
  FirstError errors;
  TextFormat::ParseInfoTree tree;
  parser.RecordErrorsTo(&errors);
  parser.WriteLocationsTo(&tree);
  Resolver r(file);
  if (!parser.ParseFromString(std::string(text), &proto)) {
    if (errors.error()) return r.Fail(errors.error()->location, errors.error()->message);
    return r.Fail({}, "cannot parse");
  }
  Where where(&tree, v1::BrokerConfig::descriptor(), {1, 1});

  Config config;
  config.file = file;
  if (!proto.socket().empty()) {
    if (proto.socket()[0] != '/') return r.Fail(where.Of("socket"), "socket must be absolute");
    if (proto.socket().size() >= 108) {
      return r.Fail(where.Of("socket"), "socket path is longer than sun_path allows");
    }
    config.socket = proto.socket();
  }
  if (!proto.socket_mode().empty()) {
    const std::string& m = proto.socket_mode();
    unsigned mode = 0;
    auto [end, ec] = std::from_chars(m.data(), m.data() + m.size(), mode, 8);
    if (ec != std::errc() || end != m.data() + m.size() || mode > 0777) {
      return r.Fail(where.Of("socket_mode"), "socket_mode '" + m + "' is not an octal mode");
    }
    config.socket_mode = static_cast<mode_t>(mode);  // 16 bits on FreeBSD, 32 on Linux
  }
  if (!proto.socket_group().empty()) {
    auto gid = r.LookupGroup(proto.socket_group());
    if (!gid) {
      return r.Fail(where.Of("socket_group"),
                    "socket_group: unknown group '" + proto.socket_group() + "'");
    }
    config.socket_group = *gid;
  }
  if (!proto.run_as().empty()) {
    auto run_as = ResolveRunAs(proto.run_as(), where.Of("run_as"), r);
    if (!run_as) return std::unexpected(std::move(run_as.error()));
    config.run_as = std::move(*run_as);
  }
  if (!proto.audit_log().empty()) {
    const std::string& a = proto.audit_log();
    if (a != "-" && a != "syslog" && a[0] != '/') {
      return r.Fail(where.Of("audit_log"),
                    "audit_log must be \"-\", \"syslog\" or an absolute path");
    }
    config.audit_log = a;
  }
  if (proto.audit_format() == v1::BrokerConfig::JSON) config.audit_format = AuditFormat::kJson;
  if (proto.max_connections() > 0) config.max_connections = proto.max_connections();
  if (proto.max_connections_per_uid() > 0) {
    config.max_connections_per_uid = proto.max_connections_per_uid();
  }
  if (proto.idle_timeout_ms() > 0) config.idle_timeout_ms = proto.idle_timeout_ms();
  if (proto.request_timeout_ms() > 0) config.request_timeout_ms = proto.request_timeout_ms();
  if (proto.max_inflight_fds_per_uid() > 0) {
    config.max_inflight_fds_per_uid = proto.max_inflight_fds_per_uid();
  }
  // Unset, the reserve is 16 connections, or a quarter of a smaller max_connections.
  config.root_reserve = proto.has_root_reserve()
                            ? proto.root_reserve()
                            : std::min<std::uint32_t>(16, config.max_connections / 4);
  if (proto.max_connection_age_ms() > 0) {
    config.max_connection_age_ms = proto.max_connection_age_ms();
  }
  if (proto.has_refresh_ms()) config.refresh_ms = proto.refresh_ms();
  config.uwsgi_socket = proto.uwsgi_socket();
  config.uwsgi_target = proto.uwsgi_target();

  std::set<std::string_view> names;
  config.targets.reserve(static_cast<std::size_t>(proto.target_size()));
  for (int i = 0; i < proto.target_size(); ++i) {
    Where tw = where.Nested("target", i);
    auto spec = ResolveTarget(proto.target(i), tw, r);
    if (!spec) return std::unexpected(std::move(spec.error()));
    config.targets.push_back(std::move(*spec));
    if (!names.insert(proto.target(i).name()).second) {
      return r.Fail(tw.Of("name"), "target '" + proto.target(i).name() + "' is defined twice");
    }
  }
  if (!config.uwsgi_target.empty() && !names.contains(config.uwsgi_target)) {
    return r.Fail(where.Of("uwsgi_target"),
                  "uwsgi_target names unknown target '" + config.uwsgi_target + "'");
  }
  return config;
}

Result<Config> LoadConfig(const std::string& path) {
  auto text = ReadConfigFile(path);
  if (!text) return std::unexpected(std::move(text.error()));
  return ParseConfig(*text, path);
}

Result<std::string> ReadConfigFile(const std::string& path) {
  UniqueFd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return SysError(ErrorCode::kNotFound, path);
  std::string text;
  char buf[65536];
  for (;;) {
    ssize_t n = read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError(ErrorCode::kNotFound, path);
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  return text;
}

Config SelfConfig(const std::string& socket) {
  Config config;
  config.file = "<built-in>";
  config.socket = socket;
  config.socket_mode = 0600;
  TargetSpec self{.name = "self", .source = SourceType::kSelf};
  self.expose = SourceKinds(self) & ~kExposedWhenNamed;
  config.targets.push_back(std::move(self));
  return config;
}

}  // namespace nsbroker
