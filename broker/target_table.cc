#include "target_table.h"

#include <cstring>
#include <limits>
#include <optional>

#include "log.h"
#include "nsbroker/kind_set.h"
#include "nsbroker/ns_kind.h"

namespace nsbroker {
namespace {

// Each encoding starts with its own magic and the version, so that bytes of one are never
// taken for another, and an opener and an nsbrokerd of different builds refuse each other.
constexpr std::uint32_t kTableMagic = 0x6e736274;     // "nsbt"
constexpr std::uint32_t kCompiledMagic = 0x6e736263;  // "nsbc"
constexpr std::uint32_t kHandoverMagic = 0x6e736268;  // "nsbh"
constexpr std::uint32_t kVersion = 1;

// Bounds of the decoder: each far above what a config can hold, and each checked before
// anything is allocated for it.
constexpr std::uint32_t kMaxTargets = 1u << 20;
constexpr std::uint32_t kMaxString = 4096;   // a name or a path (PATH_MAX)
constexpr std::uint32_t kMaxGroups = 65536;  // NGROUPS_MAX
constexpr std::uint32_t kMaxSource = static_cast<std::uint32_t>(SourceType::kCgroup);
constexpr std::uint32_t kMaxAuditFormat = static_cast<std::uint32_t>(AuditFormat::kJson);

class Writer {
 public:
  // An encoding's magic and the version.
  void Header(std::uint32_t magic) {
    U32(magic);
    U32(kVersion);
  }
  void U32(std::uint32_t v) { Raw(&v, sizeof v); }
  void U64(std::uint64_t v) { Raw(&v, sizeof v); }
  void I32(std::int32_t v) { U32(static_cast<std::uint32_t>(v)); }
  void String(std::string_view s) {
    U32(static_cast<std::uint32_t>(s.size()));
    out_.append(s);
  }
  std::string Take() { return std::move(out_); }

 private:
  void Raw(const void* p, std::size_t n) { out_.append(static_cast<const char*>(p), n); }
  std::string out_;
};

// Reads what Writer wrote. The first failure is kept and every later read fails too, so a
// decoder reads its whole layout and checks once, at the end.
class Reader {
 public:
  explicit Reader(std::string_view bytes) : bytes_(bytes) {}

  std::uint32_t U32() {
    std::uint32_t v = 0;
    Raw(&v, sizeof v);
    return v;
  }
  std::uint64_t U64() {
    std::uint64_t v = 0;
    Raw(&v, sizeof v);
    return v;
  }
  std::int32_t I32() { return static_cast<std::int32_t>(U32()); }
  std::string String(std::uint32_t max, const char* what) {
    std::uint32_t n = U32();
    if (n > max) Fail(std::string(what) + " of " + std::to_string(n) + " bytes");
    if (!error_.empty() || n > bytes_.size()) {
      Fail("a truncated " + std::string(what));
      return {};
    }
    std::string s(bytes_.substr(0, n));
    bytes_.remove_prefix(n);
    return s;
  }
  // A count of records each at least `min_size` bytes: more than the bytes left can hold is
  // refused before a vector is sized by it.
  std::uint32_t Count(std::uint32_t max, std::size_t min_size, const char* what) {
    std::uint32_t n = U32();
    if (n > max || n > bytes_.size() / min_size) {
      Fail(std::to_string(n) + " " + what);
      return 0;
    }
    return n;
  }
  std::uint32_t Enum(std::uint32_t max, const char* what) {
    std::uint32_t v = U32();
    if (v > max) Fail(std::string(what) + " " + std::to_string(v));
    return ok() ? v : 0;
  }
  void Magic(std::uint32_t magic, const char* what) {
    std::uint32_t got = U32();
    std::uint32_t version = U32();
    if (!ok()) return;
    if (got != magic) return Fail("not " + std::string(what));
    if (version != kVersion) {
      Fail(std::string(what) + " of version " + std::to_string(version) + ", not " +
           std::to_string(kVersion));
    }
  }
  void Fail(const std::string& why) {
    if (error_.empty()) error_ = why;
  }
  bool ok() const { return error_.empty(); }
  // `decoded`, when every byte was read and nothing is left over.
  template <class T>
  Result<T> Done(T decoded, const char* what) {
    if (ok() && !bytes_.empty()) Fail(std::to_string(bytes_.size()) + " bytes after the end");
    if (ok()) return decoded;
    return MakeError(ErrorCode::kInvalidRequest, std::string(what) + ": " + error_);
  }

 private:
  void Raw(void* p, std::size_t n) {
    if (!ok()) return;
    if (bytes_.size() < n) return Fail("truncated");
    std::memcpy(p, bytes_.data(), n);
    bytes_.remove_prefix(n);
  }
  std::string_view bytes_;
  std::string error_;
};

constexpr KindSet AllKinds() {
  KindSet all = 0;
  for (NsKind kind : kAllKinds) all |= KindBit(kind);
  return all;
}

std::optional<NsKind> KindOf(std::uint32_t v) {
  for (NsKind kind : kAllKinds) {
    if (static_cast<std::uint32_t>(kind) == v) return kind;
  }
  return std::nullopt;
}

void PutTable(Writer& w, const Config& c) {
  w.Header(kTableMagic);  // nested in the other two under its own magic, too
  w.String(c.file);
  w.String(c.audit_log);
  w.U32(static_cast<std::uint32_t>(c.audit_format));
  w.U32(c.run_as ? 1 : 0);
  if (c.run_as) {
    w.String(c.run_as->name);
    w.U32(c.run_as->uid);
    w.U32(c.run_as->gid);
    w.U32(static_cast<std::uint32_t>(c.run_as->groups.size()));
    for (gid_t g : c.run_as->groups) w.U32(g);
  }
  w.U32(static_cast<std::uint32_t>(c.targets.size()));
  for (const TargetSpec& t : c.targets) {
    w.String(t.name);
    w.U32(static_cast<std::uint32_t>(t.source));
    w.I32(t.pid);
    w.String(t.file);
    w.String(t.oci.id);
    w.String(t.oci.runtime);
    w.String(t.oci.root);
    w.U32(t.oci.timeout_ms);
    w.U32(static_cast<std::uint32_t>(t.paths.size()));
    for (const auto& [kind, path] : t.paths) {
      w.U32(static_cast<std::uint32_t>(kind));
      w.String(path);
    }
    w.U32(t.expose);
    w.I32(t.location.line);
    w.I32(t.location.column);
  }
}

// The smallest encoded target: its fixed fields and empty strings.
constexpr std::size_t kMinTarget = 12 * sizeof(std::uint32_t);

Config GetTable(Reader& r) {
  Config c;
  r.Magic(kTableMagic, "a target table");
  c.file = r.String(kMaxString, "file name");
  c.audit_log = r.String(kMaxString, "audit_log");
  c.audit_format = static_cast<AuditFormat>(r.Enum(kMaxAuditFormat, "audit format"));
  if (r.Enum(1, "run_as flag") == 1) {
    RunAs run_as;
    run_as.name = r.String(kMaxString, "run_as name");
    run_as.uid = r.U32();
    run_as.gid = r.U32();
    std::uint32_t groups = r.Count(kMaxGroups, sizeof(std::uint32_t), "run_as groups");
    for (std::uint32_t i = 0; i < groups; ++i) run_as.groups.push_back(r.U32());
    c.run_as = std::move(run_as);
  }
  std::uint32_t targets = r.Count(kMaxTargets, kMinTarget, "targets");
  c.targets.reserve(targets);
  for (std::uint32_t i = 0; i < targets && r.ok(); ++i) {
    TargetSpec t;
    t.name = r.String(kMaxString, "target name");
    t.source = static_cast<SourceType>(r.Enum(kMaxSource, "source type"));
    t.pid = r.I32();
    t.file = r.String(kMaxString, "target file");
    t.oci.id = r.String(kMaxString, "oci id");
    t.oci.runtime = r.String(kMaxString, "oci runtime");
    t.oci.root = r.String(kMaxString, "oci root");
    t.oci.timeout_ms = r.U32();
    std::uint32_t paths = r.Count(kAllKinds.size(), 2 * sizeof(std::uint32_t), "paths");
    for (std::uint32_t p = 0; p < paths && r.ok(); ++p) {
      std::uint32_t v = r.U32();
      auto kind = KindOf(v);
      if (!kind) r.Fail("kind " + std::to_string(v));
      std::string path = r.String(kMaxString, "path");
      if (kind) t.paths.emplace_back(*kind, std::move(path));
    }
    t.expose = static_cast<KindSet>(r.U32());
    if ((t.expose & ~AllKinds()) != 0) r.Fail("expose " + std::to_string(t.expose));
    t.location.line = r.I32();
    t.location.column = r.I32();
    if (t.location.line < 0 || t.location.column < 0) r.Fail("a negative location");
    if (t.pid < 0) r.Fail("pid " + std::to_string(t.pid));
    c.targets.push_back(std::move(t));
  }
  return c;
}

}  // namespace

std::string EncodeTargetTable(const Config& config) {
  Writer w;
  PutTable(w, config);
  return w.Take();
}

Result<Config> DecodeTargetTable(std::string_view bytes) {
  Reader r(bytes);
  Config config = GetTable(r);
  return r.Done(std::move(config), "target table");
}

bool SameSource(const TargetSpec& a, const TargetSpec& b) {
  return a.source == b.source && a.pid == b.pid && a.file == b.file && a.oci == b.oci &&
         a.paths == b.paths && a.expose == b.expose;
}

void KeepRunAs(Config& next, const std::optional<RunAs>& running) {
  if (next.run_as != running) LogLine("reload: run_as changes only on restart");
  next.run_as.reset();
}

std::string EncodeCompiledConfig(const CompiledConfig& compiled) {
  Writer w;
  w.Header(kCompiledMagic);
  w.String(compiled.text);
  PutTable(w, compiled.table);
  return w.Take();
}

Result<CompiledConfig> DecodeCompiledConfig(std::string_view bytes) {
  Reader r(bytes);
  CompiledConfig compiled;
  r.Magic(kCompiledMagic, "a compiled config");
  compiled.text = r.String(kMaxConfigBytes, "config text");
  compiled.table = GetTable(r);
  return r.Done(std::move(compiled), "compiled config");
}

std::string EncodeHandover(const Handover& h) {
  Writer w;
  w.Header(kHandoverMagic);
  w.String(h.config_path);
  w.I32(h.channel);
  w.I32(h.self_exe);
  w.I32(h.server);
  for (const SocketFileId* f : {&h.socket_file, &h.uwsgi_file}) {
    w.String(f->path);
    w.U64(f->dev);
    w.U64(f->ino);
  }
  PutTable(w, h.config);
  return w.Take();
}

Result<Handover> DecodeHandover(std::string_view bytes) {
  Reader r(bytes);
  Handover h;
  r.Magic(kHandoverMagic, "an opener hand-over");
  h.config_path = r.String(kMaxString, "config path");
  h.channel = r.I32();
  h.self_exe = r.I32();
  h.server = r.I32();
  if (r.ok() && (h.channel < 0 || h.self_exe < 0 || h.channel == h.self_exe)) {
    r.Fail("descriptors " + std::to_string(h.channel) + " and " + std::to_string(h.self_exe));
  }
  if (r.ok() && h.server <= 0) r.Fail("server pid " + std::to_string(h.server));
  for (SocketFileId* f : {&h.socket_file, &h.uwsgi_file}) {
    f->path = r.String(kMaxString, "socket path");
    f->dev = static_cast<dev_t>(r.U64());
    f->ino = static_cast<ino_t>(r.U64());
  }
  h.config = GetTable(r);
  return r.Done(std::move(h), "opener hand-over");
}

}  // namespace nsbroker
