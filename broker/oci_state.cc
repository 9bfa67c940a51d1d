#include "oci_state.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cctype>
#include <charconv>
#include <optional>
#include <set>
#include <vector>

#include "trusted_file.h"

namespace nsbroker {
namespace {

constexpr int kMaxDepth = 32;
constexpr std::size_t kMaxStderr = 4096;

// A strict JSON reader (RFC 8259) over the whole text that keeps the top-level "pid" and
// "status". Strings are decoded only as far as ASCII: keys and status are compared, not shown.
class StateReader {
 public:
  explicit StateReader(std::string_view text) : s_(text) {}

  bool Read() {
    Space();
    if (!Peek('{')) return Fail("expected an object");
    if (!Object(1, true)) return false;
    Space();
    return at_ == s_.size() || Fail("text after the object");
  }
  const std::string& error() const { return error_; }
  std::optional<long long> pid;
  std::optional<std::string> status;

 private:
  bool Fail(const std::string& what) {
    if (error_.empty()) error_ = what + " at byte " + std::to_string(at_);
    return false;
  }
  void Space() {
    while (at_ < s_.size() &&
           (s_[at_] == ' ' || s_[at_] == '\t' || s_[at_] == '\n' || s_[at_] == '\r')) {
      ++at_;
    }
  }
  bool Peek(char c) const { return at_ < s_.size() && s_[at_] == c; }
  bool Eat(char c) {
    Space();
    if (!Peek(c)) return Fail(std::string("expected '") + c + "'");
    ++at_;
    return true;
  }

  bool Value(int depth, std::string* string_out, std::string_view* number_out) {
    Space();
    if (at_ >= s_.size()) return Fail("unexpected end");
    char c = s_[at_];
    if (c == '{') return Object(depth + 1, false);
    if (c == '[') return Array(depth + 1);
    if (c == '"') {
      std::string ignored;
      return String(string_out != nullptr ? string_out : &ignored);
    }
    if (c == 't') return Word("true");
    if (c == 'f') return Word("false");
    if (c == 'n') return Word("null");
    return Number(number_out);
  }

  bool Object(int depth, bool top) {
    if (depth > kMaxDepth) return Fail("nested too deep");
    ++at_;  // '{'
    Space();
    if (Peek('}')) return ++at_, true;
    std::set<std::string> keys;
    for (;;) {
      Space();
      std::string key;
      if (!Peek('"')) return Fail("expected a key");
      if (!String(&key)) return false;
      if (!Eat(':')) return false;
      std::string text;
      std::string_view number;
      Space();
      char first = at_ < s_.size() ? s_[at_] : '\0';
      if (!Value(depth, &text, &number)) return false;
      if (top) {
        if (!keys.insert(key).second) return Fail("duplicate key \"" + key + "\"");
        if (key == "pid") {
          long long v = 0;
          auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), v);
          if (number.empty() || ec != std::errc() || end != number.data() + number.size() ||
              v < 0 || v > 0x3fffffff) {
            return Fail("\"pid\" is not a process id");
          }
          pid = v;
        } else if (key == "status") {
          if (first != '"') {
            return Fail("\"status\" is not a string");
          }
          status = text;
        }
      }
      Space();
      if (Peek(',')) {
        ++at_;
        continue;
      }
      return Eat('}');
    }
  }

  bool Array(int depth) {
    if (depth > kMaxDepth) return Fail("nested too deep");
    ++at_;  // '['
    Space();
    if (Peek(']')) return ++at_, true;
    for (;;) {
      if (!Value(depth, nullptr, nullptr)) return false;
      Space();
      if (Peek(',')) {
        ++at_;
        continue;
      }
      return Eat(']');
    }
  }

  bool String(std::string* out) {
    ++at_;  // '"'
    while (at_ < s_.size()) {
      auto c = static_cast<unsigned char>(s_[at_++]);
      if (c == '"') return true;
      if (c < 0x20) return Fail("control character in a string");
      if (c != '\\') {
        out->push_back(static_cast<char>(c));
        continue;
      }
      if (at_ >= s_.size()) break;
      char e = s_[at_++];
      static constexpr std::string_view kSimple = "\"\\/bfnrt";
      if (kSimple.find(e) != std::string_view::npos) {
        out->push_back(e == 'n' ? '\n' : e == 't' ? '\t' : e);
      } else if (e == 'u') {
        for (int i = 0; i < 4; ++i, ++at_) {
          if (at_ >= s_.size() || !std::isxdigit(static_cast<unsigned char>(s_[at_]))) {
            return Fail("bad \\u escape");
          }
        }
        out->push_back('?');
      } else {
        return Fail("bad escape");
      }
    }
    return Fail("unterminated string");
  }

  bool Number(std::string_view* out) {
    std::size_t from = at_;
    auto digits = [&] {
      std::size_t start = at_;
      while (at_ < s_.size() && s_[at_] >= '0' && s_[at_] <= '9') ++at_;
      return at_ - start;
    };
    if (Peek('-')) ++at_;
    if (Peek('0')) {
      ++at_;
    } else if (digits() == 0) {
      return Fail("expected a value");
    }
    if (Peek('.')) {
      ++at_;
      if (digits() == 0) return Fail("bad number");
    }
    if (Peek('e') || Peek('E')) {
      ++at_;
      if (Peek('+') || Peek('-')) ++at_;
      if (digits() == 0) return Fail("bad number");
    }
    if (out != nullptr) *out = s_.substr(from, at_ - from);
    return true;
  }

  bool Word(std::string_view word) {
    if (s_.substr(at_, word.size()) != word) return Fail("expected a value");
    at_ += word.size();
    return true;
  }

  std::string_view s_;
  std::size_t at_ = 0;
  std::string error_;
};

// A runtime's words in our messages: printable ASCII, at most 200 bytes.
std::string Printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 200)) out.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  return out;
}

// The last line of the runtime's stderr; of runc's and crun's log lines, the msg="..." part.
std::string LastLine(std::string_view err) {
  while (!err.empty() && (err.back() == '\n' || err.back() == ' ')) err.remove_suffix(1);
  std::size_t nl = err.rfind('\n');
  std::string_view line = nl == std::string_view::npos ? err : err.substr(nl + 1);
  std::size_t msg = line.find("msg=\"");
  if (msg != std::string_view::npos) {
    std::string_view rest = line.substr(msg + 5);
    line = rest.substr(0, rest.find('"'));
  }
  return Printable(line);
}

// Children killed whose exit we have not collected yet (a runtime stuck in the kernel).
std::vector<pid_t>& Unreaped() {
  static std::vector<pid_t> pids;
  return pids;
}

void ReapLeftovers() {
  auto& pids = Unreaped();
  std::erase_if(pids, [](pid_t pid) { return waitpid(pid, nullptr, WNOHANG) != 0; });
}

int PidfdOpen(pid_t pid) { return static_cast<int>(syscall(SYS_pidfd_open, pid, 0)); }
void Kill(int pidfd) { syscall(SYS_pidfd_send_signal, pidfd, SIGKILL, nullptr, 0); }

}  // namespace

unsigned long long BootTicksNow() {
  timespec ts{};
  clock_gettime(CLOCK_BOOTTIME, &ts);
  auto hz = static_cast<unsigned long long>(sysconf(_SC_CLK_TCK));
  return static_cast<unsigned long long>(ts.tv_sec) * hz +
         static_cast<unsigned long long>(ts.tv_nsec) / (1000000000ULL / hz);
}

Result<OciState> ParseOciState(std::string_view json, const std::string& id) {
  StateReader reader(json);
  if (!reader.Read()) {
    return MakeError(ErrorCode::kUnavailable, "runtime output is not JSON: " + reader.error());
  }
  if (!reader.status) return MakeError(ErrorCode::kUnavailable, "runtime state has no \"status\"");
  if (!reader.pid) return MakeError(ErrorCode::kUnavailable, "runtime state has no \"pid\"");
  if (*reader.status != "running") {
    return MakeError(ErrorCode::kUnavailable,
                     "container " + id + " is " + Printable(*reader.status));
  }
  if (*reader.pid <= 0) {
    return MakeError(ErrorCode::kUnavailable, "container " + id + " is running without a pid");
  }
  return OciState{.pid = static_cast<pid_t>(*reader.pid)};
}

Result<std::string> RuntimePath(const OciSpec& oci) {
  if (oci.runtime[0] == '/') {
    auto fd = OpenTrusted(oci.runtime, O_RDONLY);
    if (!fd) return std::unexpected(std::move(fd.error()));
    return oci.runtime;
  }
  for (const char* dir : {"/usr/sbin/", "/usr/bin/", "/sbin/", "/bin/"}) {
    std::string path = dir + oci.runtime;
    auto fd = OpenTrusted(path, O_RDONLY);
    if (fd) return path;
    if (fd.error().code != ErrorCode::kNotFound) return std::unexpected(std::move(fd.error()));
  }
  return MakeError(ErrorCode::kUnavailable,
                   "no " + oci.runtime + " in /usr/sbin, /usr/bin, /sbin or /bin");
}

std::string StateQuery::Command() const {
  return path_ + (oci_.root.empty() ? "" : " --root " + oci_.root) + " state " + oci_.id;
}

Result<std::unique_ptr<StateQuery>> StateQuery::Start(const OciSpec& oci) {
  ReapLeftovers();
  auto path = RuntimePath(oci);
  if (!path) return std::unexpected(std::move(path.error()));
  std::unique_ptr<StateQuery> q(new StateQuery(oci));
  q->path_ = *path;
  int out[2], err[2];
  if (pipe2(out, O_CLOEXEC) != 0) return SysError("pipe for " + q->Command());
  UniqueFd out_w(out[1]);
  q->out_.reset(out[0]);
  if (pipe2(err, O_CLOEXEC) != 0) return SysError("pipe for " + q->Command());
  UniqueFd err_w(err[1]);
  q->err_.reset(err[0]);
  fcntl(q->out_.get(), F_SETFL, O_NONBLOCK);
  fcntl(q->err_.get(), F_SETFL, O_NONBLOCK);

  std::vector<std::string> args = {q->path_};
  if (!oci.root.empty()) args.insert(args.end(), {"--root", oci.root});
  args.insert(args.end(), {"state", oci.id});
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  char env_path[] = "PATH=/usr/sbin:/usr/bin:/sbin:/bin";
  char* envp[] = {env_path, nullptr};

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
  posix_spawn_file_actions_adddup2(&actions, out_w.get(), 1);
  posix_spawn_file_actions_adddup2(&actions, err_w.get(), 2);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);  // SIGPIPE is ignored here, not in the runtime
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  q->asked_at_ = BootTicksNow();
  int rc = posix_spawn(&q->pid_, q->path_.c_str(), &actions, &attr, argv.data(), envp);
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attr);
  if (rc != 0) {
    q->pid_ = -1;
    errno = rc;
    return SysError(ErrorCode::kUnavailable, "run " + q->Command());
  }
  // Our own unreaped child: its pid cannot be reused before we wait for it.
  q->pidfd_.reset(PidfdOpen(q->pid_));
  if (!q->pidfd_.valid()) return SysError("pidfd_open for " + q->Command());
  return q;
}

StateQuery::~StateQuery() {
  if (pid_ > 0) {
    if (pidfd_.valid()) Kill(pidfd_.get());
    if (waitpid(pid_, nullptr, WNOHANG) == 0) Unreaped().push_back(pid_);
  }
  ReapLeftovers();
}

std::optional<Error> StateQuery::Read(Stream stream) {
  bool err = stream == Stream::kErr;
  if (!open(stream)) return std::nullopt;
  std::string& text = err ? err_text_ : out_text_;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd(stream), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n == 0) {
      (err ? err_eof_ : out_eof_) = true;
      return std::nullopt;
    }
    if (n < 0) return std::nullopt;  // EAGAIN: the rest comes later
    text.append(buf, static_cast<std::size_t>(n));
    if (err && text.size() > 2 * kMaxStderr) text.erase(0, text.size() - kMaxStderr);
    if (!err && text.size() > kMaxStateOutput) {
      return Error{
          ErrorCode::kUnavailable, 0,
          Command() + " printed more than " + std::to_string(kMaxStateOutput / 1024) + " KiB"};
    }
  }
}

std::optional<Result<OciState>> StateQuery::OnReadable(Stream stream) {
  if (auto refused = Read(stream)) return Finish(std::unexpected(std::move(*refused)));
  return std::nullopt;
}

Result<OciState> StateQuery::OnExit() {
  int status = 0;
  pid_t got = waitpid(pid_, &status, WNOHANG);
  if (got == pid_) pid_ = -1;
  // What it wrote before it exited is in the pipes; a descendant holding them open must not
  // keep us waiting for an end of file.
  if (auto refused = Read(Stream::kOut)) return Finish(std::unexpected(std::move(*refused)));
  (void)Read(Stream::kErr);  // stderr is bounded by keeping its tail, never refused
  if (got != pid_ && pid_ > 0) {
    return Finish(SysError(ErrorCode::kUnavailable, "wait for " + Command()));
  }
  if (WIFSIGNALED(status)) {
    return Finish(MakeError(ErrorCode::kUnavailable, Command() + " was killed by signal " +
                                                         std::to_string(WTERMSIG(status))));
  }
  if (WEXITSTATUS(status) != 0) {
    std::string why = LastLine(err_text_);
    return Finish(MakeError(ErrorCode::kUnavailable, Command() + " failed (exit " +
                                                         std::to_string(WEXITSTATUS(status)) + ")" +
                                                         (why.empty() ? "" : ": " + why)));
  }
  auto state = ParseOciState(out_text_, oci_.id);
  if (state) state->asked_at_ticks = asked_at_;
  return Finish(std::move(state));
}

Result<OciState> StateQuery::OnTimeout() {
  return Finish(MakeError(ErrorCode::kUnavailable, Command() + " timed out after " +
                                                       std::to_string(oci_.timeout_ms) + " ms"));
}

void StateQuery::Reap() {
  if (pid_ > 0 && waitpid(pid_, nullptr, WNOHANG) == pid_) pid_ = -1;
}

Result<OciState> StateQuery::Finish(Result<OciState> result) {
  if (pid_ > 0) Kill(pidfd_.get());  // timed out or too talkative; reaped when it exits
  if (!result) {
    result.error().message = "container " + oci_.id + ": " + result.error().message;
  }
  return result;
}

Result<OciState> QueryStateNow(const OciSpec& oci) {
  auto started = StateQuery::Start(oci);
  if (!started) return std::unexpected(std::move(started.error()));
  StateQuery& query = **started;
  using Clock = std::chrono::steady_clock;
  const Clock::time_point deadline = Clock::now() + query.timeout();
  constexpr StateQuery::Stream kStreams[] = {StateQuery::Stream::kOut, StateQuery::Stream::kErr};
  for (;;) {
    auto left = deadline - Clock::now();
    if (left <= Clock::duration::zero()) return query.OnTimeout();
    auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(left).count();
    timespec wait{.tv_sec = static_cast<time_t>(ns / 1000000000),
                  .tv_nsec = static_cast<long>(ns % 1000000000)};
    // A pipe at its end is left out (poll(2) skips a negative fd): it would be readable for ever.
    pollfd fds[3];
    for (int i = 0; i < 2; ++i) {
      fds[i] = {query.open(kStreams[i]) ? query.fd(kStreams[i]) : -1, POLLIN, 0};
    }
    fds[2] = {query.pidfd(), POLLIN, 0};
    int n = ppoll(fds, 3, &wait, nullptr);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return SysError(ErrorCode::kInternal, "ppoll for the runtime of " + oci.id);
    for (int i = 0; i < 2; ++i) {
      if (fds[i].revents == 0) continue;
      if (auto answer = query.OnReadable(kStreams[i])) return std::move(*answer);
    }
    if (fds[2].revents != 0) return query.OnExit();
  }
}

}  // namespace nsbroker
