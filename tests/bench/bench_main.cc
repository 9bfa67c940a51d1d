// nsbroker-bench: the load generator. N client processes do grants against a UNIX socket for
// a fixed time or count and report grants/s and latency percentiles. Never a timed test.
//
//   nsbroker-bench --socket S --target T --clients 16 --mode connect --duration 3 --kv
//   nsbroker-bench --socket S --hold 10000        (holds idle connections until SIGTERM)
//   nsbroker-bench --socket S --wait-socket       (exits 0 once S accepts connections)
//   nsbroker-bench --socket S --describe          (the kinds and descriptors of one grant)
#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "bench_client.h"

namespace nsbroker::bench {
namespace {

enum class Protocol { kNative, kUwsgi };

struct Options {
  std::string socket;
  std::string target = "t";
  std::string label = "server";
  Protocol protocol = Protocol::kNative;
  bool persistent = false;
  int clients = 1;
  double duration_s = 0;    // 0: run until `count` grants
  std::uint64_t count = 0;  // 0 with duration 0: 1000
  double max_seconds = 60;  // hard bound on any run, whatever `count` says
  long expect_fds = -1;
  std::size_t hold = 0;
  bool wait_socket = false;
  bool describe = false;
  bool status = false;
  std::uint64_t cycle = 0;  // >0: targets TARGET1..TARGETcycle in turn (cache hit/miss)
  bool kv = false;
};

constexpr std::size_t kMaxSamples = 8 << 20;  // latency samples kept, over all clients

std::uint64_t NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::uint64_t>(ts.tv_sec) * 1000000000u +
         static_cast<std::uint64_t>(ts.tv_nsec);
}

// What each client process leaves behind, one cache line each so that clients never share
// one while they run.
struct alignas(64) ClientStats {
  std::uint64_t grants;
  std::uint64_t errors;
  std::uint64_t fds;
  std::uint64_t recorded;
  std::uint64_t end_ns;
};

// Shared between the parent and its client processes (MAP_SHARED survives fork): the start
// time, per-client stats and per-client latency samples in nanoseconds.
class Arena {
 public:
  Arena(int clients, std::size_t per_client)
      : clients_(static_cast<std::size_t>(clients)), per_client_(per_client) {
    size_ = 64 + clients_ * sizeof(ClientStats) + clients_ * per_client_ * sizeof(std::uint32_t);
    base_ = mmap(nullptr, size_, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
    if (base_ == MAP_FAILED) {
      std::perror("nsbroker-bench: mmap");
      std::exit(1);
    }
  }
  ~Arena() { munmap(base_, size_); }
  Arena(const Arena&) = delete;
  Arena& operator=(const Arena&) = delete;

  std::uint64_t& start_ns() { return *static_cast<std::uint64_t*>(base_); }
  ClientStats& stats(std::size_t i) {
    return reinterpret_cast<ClientStats*>(static_cast<char*>(base_) + 64)[i];
  }
  std::uint32_t* samples(std::size_t i) {
    auto* first = reinterpret_cast<std::uint32_t*>(static_cast<char*>(base_) + 64 +
                                                   clients_ * sizeof(ClientStats));
    return first + i * per_client_;
  }
  std::size_t per_client() const { return per_client_; }

 private:
  std::size_t clients_;
  std::size_t per_client_;
  std::size_t size_;
  void* base_;
};

// One grant, timed from the caller's side: for `connect` mode (and always for uWSGI, whose
// server closes after each greeting) that includes connect and close.
Result<std::size_t> OneGrant(const Options& options, const v1::Request& request,
                             UniqueFd& persistent) {
  if (options.protocol == Protocol::kUwsgi) {
    auto sock = ConnectUnix(options.socket, SOCK_STREAM);
    if (!sock) return std::unexpected(std::move(sock.error()));
    return UwsgiReceive(*sock);
  }
  if (!options.persistent) {
    auto sock = ConnectUnix(options.socket, SOCK_SEQPACKET);
    if (!sock) return std::unexpected(std::move(sock.error()));
    return NativeJoin(*sock, request);
  }
  auto granted = NativeJoin(persistent, request);
  if (!granted) persistent.reset();  // the server may have closed it; reconnect next time
  return granted;
}

void RunClient(const Options& options, std::size_t index, std::uint64_t quota,
               std::uint64_t deadline_ns, Arena& arena) {
  v1::Request request = JoinRequest(options.target);
  std::uint64_t next_target = index;  // with --cycle, clients start apart
  std::uint32_t* samples = arena.samples(index);
  ClientStats local{};
  UniqueFd persistent;
  while (local.grants + local.errors < quota && NowNs() < deadline_ns) {
    if (options.persistent && options.protocol == Protocol::kNative && !persistent.valid()) {
      auto sock = ConnectUnix(options.socket, SOCK_SEQPACKET);
      if (!sock) {
        if (local.errors++ == 0) {
          std::fprintf(stderr, "nsbroker-bench: client %zu: %s\n", index,
                       sock.error().message.c_str());
        }
        usleep(1000);  // a refused connect returns at once: don't spin a core on it
        continue;
      }
      persistent = std::move(*sock);
    }
    if (options.cycle > 0) {
      request.mutable_join()->set_target(options.target +
                                         std::to_string(1 + next_target++ % options.cycle));
    }
    std::uint64_t t0 = NowNs();
    auto granted = OneGrant(options, request, persistent);
    std::uint64_t t1 = NowNs();
    if (!granted) {
      if (local.errors++ == 0) {
        std::fprintf(stderr, "nsbroker-bench: client %zu: %s\n", index,
                     granted.error().message.c_str());
      }
      usleep(1000);
      continue;
    }
    ++local.grants;
    local.fds += *granted;
    if (local.recorded < arena.per_client()) {
      samples[local.recorded++] = static_cast<std::uint32_t>(
          std::min<std::uint64_t>(t1 - t0, std::numeric_limits<std::uint32_t>::max()));
    }
  }
  local.end_ns = NowNs();
  arena.stats(index) = local;
}

double PercentileUs(std::vector<std::uint32_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  auto rank = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return sorted[rank] / 1000.0;
}

int RunLoad(const Options& options) {
  const auto clients = static_cast<std::size_t>(options.clients);
  Arena arena(options.clients, kMaxSamples / clients);
  std::uint64_t count = options.count;
  if (count == 0 && options.duration_s == 0) count = 1000;
  int start_pipe[2];
  if (pipe2(start_pipe, O_CLOEXEC) != 0) {
    std::perror("nsbroker-bench: pipe2");
    return 1;
  }
  UniqueFd start_read(start_pipe[0]);
  UniqueFd start_write(start_pipe[1]);
  double run_s = options.duration_s > 0 ? options.duration_s : options.max_seconds;
  std::vector<pid_t> pids;
  for (std::size_t i = 0; i < clients; ++i) {
    std::uint64_t quota = std::numeric_limits<std::uint64_t>::max();
    if (count > 0) quota = count / clients + (i < count % clients ? 1 : 0);
    pid_t pid = fork();
    if (pid < 0) {
      std::perror("nsbroker-bench: fork");
      for (pid_t p : pids) kill(p, SIGKILL);
      return 1;
    }
    if (pid == 0) {
      prctl(PR_SET_PDEATHSIG, SIGKILL);  // a killed bench leaves no clients behind
      start_write.reset();
      char byte;
      while (read(start_read.get(), &byte, 1) < 0 && errno == EINTR) {
      }
      std::uint64_t deadline = arena.start_ns() + static_cast<std::uint64_t>(run_s * 1e9);
      RunClient(options, i, quota, deadline, arena);
      _exit(0);
    }
    pids.push_back(pid);
  }
  // Every client waits on the pipe; closing it starts them all at once.
  arena.start_ns() = NowNs();
  start_write.reset();
  bool failed = false;
  for (pid_t pid : pids) {
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) failed = true;
  }
  if (failed) std::fprintf(stderr, "nsbroker-bench: a client process failed\n");

  ClientStats total{};
  std::vector<std::uint32_t> samples;
  for (std::size_t i = 0; i < clients; ++i) {
    const ClientStats& s = arena.stats(i);
    total.grants += s.grants;
    total.errors += s.errors;
    total.fds += s.fds;
    total.end_ns = std::max(total.end_ns, s.end_ns);
    samples.insert(samples.end(), arena.samples(i), arena.samples(i) + s.recorded);
  }
  std::sort(samples.begin(), samples.end());
  double seconds = total.end_ns > arena.start_ns()
                       ? static_cast<double>(total.end_ns - arena.start_ns()) / 1e9
                       : 0;
  double rate = seconds > 0 ? static_cast<double>(total.grants) / seconds : 0;
  double fds_per_grant =
      total.grants > 0 ? static_cast<double>(total.fds) / static_cast<double>(total.grants) : 0;
  const char* protocol = options.protocol == Protocol::kUwsgi ? "uwsgi" : "native";
  const char* mode = options.persistent ? "persistent" : "connect";
  double p50 = PercentileUs(samples, 0.50);
  double p99 = PercentileUs(samples, 0.99);
  double p999 = PercentileUs(samples, 0.999);
  double max = samples.empty() ? 0 : samples.back() / 1000.0;
  if (options.kv) {
    std::printf(
        "server=%s protocol=%s mode=%s clients=%d grants=%llu errors=%llu seconds=%.3f "
        "grants_per_s=%.0f p50_us=%.1f p99_us=%.1f p999_us=%.1f max_us=%.1f "
        "fds_per_grant=%.2f samples=%zu\n",
        options.label.c_str(), protocol, mode, options.clients,
        static_cast<unsigned long long>(total.grants),
        static_cast<unsigned long long>(total.errors), seconds, rate, p50, p99, p999, max,
        fds_per_grant, samples.size());
  } else {
    std::printf(
        "%s %s %s, %d clients: %llu grants in %.2f s = %.0f grants/s; latency p50 %.1f us, "
        "p99 %.1f us, p99.9 %.1f us, max %.1f us; %.2f descriptors/grant; %llu errors\n",
        options.label.c_str(), protocol, mode, options.clients,
        static_cast<unsigned long long>(total.grants), seconds, rate, p50, p99, p999, max,
        fds_per_grant, static_cast<unsigned long long>(total.errors));
  }
  if (options.expect_fds >= 0 && total.grants > 0 &&
      total.fds != static_cast<std::uint64_t>(options.expect_fds) * total.grants) {
    std::fprintf(stderr, "nsbroker-bench: expected %ld descriptors per grant, got %.2f\n",
                 options.expect_fds, fds_per_grant);
    return 1;
  }
  return failed || total.errors > 0 || total.grants == 0 ? 1 : 0;
}

// Idle connections cost the server a descriptor each: allow as many as the hard limit.
void RaiseNoFileLimit() {
  rlimit limit;
  if (getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur < limit.rlim_max) {
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
  }
}

// Opens `hold` connections that never send, reports how many the server kept, then waits
// for SIGTERM/SIGINT (or the duration) and closes them.
int RunHold(const Options& options) {
  RaiseNoFileLimit();
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);
  int type = options.protocol == Protocol::kUwsgi ? SOCK_STREAM : SOCK_SEQPACKET;
  std::vector<UniqueFd> held;
  held.reserve(options.hold);
  for (std::size_t i = 0; i < options.hold; ++i) {
    auto sock = ConnectUnix(options.socket, type);
    if (!sock) {
      std::fprintf(stderr, "nsbroker-bench: connection %zu of %zu: %s\n", i + 1, options.hold,
                   sock.error().message.c_str());
      return 1;
    }
    held.push_back(std::move(*sock));
  }
  // A server over its connection limit answers and closes: those show up as readable.
  usleep(200000);
  std::vector<pollfd> fds;
  for (const UniqueFd& fd : held) fds.push_back({.fd = fd.get(), .events = POLLIN});
  int closed = poll(fds.data(), fds.size(), 0);
  std::printf("held=%zu closed_by_server=%d\n", held.size(), std::max(closed, 0));
  std::fflush(stdout);
  double wait_s = options.duration_s > 0 ? options.duration_s : 3600;
  timespec timeout{.tv_sec = static_cast<time_t>(wait_s), .tv_nsec = 0};
  sigtimedwait(&stop, nullptr, &timeout);
  return 0;
}

// The broker's Status figures on one line (scripts/bench: descriptors and cache hit/miss).
int RunStatus(const Options& options) {
  auto sock = ConnectUnix(options.socket, SOCK_SEQPACKET);
  if (!sock) {
    std::fprintf(stderr, "nsbroker-bench: %s\n", sock.error().message.c_str());
    return 1;
  }
  v1::Request request;
  request.set_protocol_version(kProtocolVersion);
  request.mutable_status();
  auto sent = SendMessage(*sock, request);
  auto datagram = sent ? ReceiveDatagram(*sock, 0) : std::unexpected(sent.error());
  auto response = datagram ? DecodeResponse(datagram->bytes, 0) : std::unexpected(datagram.error());
  if (!response || !response->has_status()) {
    std::fprintf(stderr, "nsbroker-bench: no status\n");
    return 1;
  }
  const v1::Status& st = response->status();
  std::printf(
      "descriptor_budget=%llu descriptors_held=%llu cache_descriptors=%llu "
      "cache_hits=%llu cache_misses=%llu grants=%llu\n",
      static_cast<unsigned long long>(st.descriptor_budget()),
      static_cast<unsigned long long>(st.descriptors_held()),
      static_cast<unsigned long long>(st.cache_descriptors()),
      static_cast<unsigned long long>(st.cache_hits()),
      static_cast<unsigned long long>(st.cache_misses()),
      static_cast<unsigned long long>(st.grants()));
  return 0;
}

// One Join, printed as "kinds=net,uts,... fds=N": scripts/bench uses it to make the
// ceiling send exactly what the broker sends.
int RunDescribe(const Options& options) {
  auto sock = ConnectUnix(options.socket, SOCK_SEQPACKET);
  if (!sock) {
    std::fprintf(stderr, "nsbroker-bench: %s\n", sock.error().message.c_str());
    return 1;
  }
  auto fail = [&](const std::string& why) {
    std::fprintf(stderr, "nsbroker-bench: no grant for '%s': %s\n", options.target.c_str(),
                 why.c_str());
    return 1;
  };
  auto sent = SendMessage(*sock, JoinRequest(options.target));
  if (!sent) return fail(sent.error().message);
  auto datagram = ReceiveDatagram(*sock, 64, 4096);
  if (!datagram) return fail(datagram.error().message);
  auto response = DecodeResponse(datagram->bytes, datagram->fds.size());
  if (!response) return fail(response.error().message);
  if (!response->has_grant()) return fail(response->error().message());
  std::string kinds;
  for (const auto& entry : response->grant().entries()) {
    auto kind = KindFromWire(entry.kind());
    if (!kinds.empty()) kinds += ',';
    kinds += kind ? std::string(KindName(*kind)) : std::to_string(entry.kind());
  }
  std::printf("kinds=%s fds=%zu\n", kinds.c_str(), datagram->fds.size());
  return 0;
}

// Polls until the socket accepts a connection: how scripts/bench times server start-up.
int RunWaitSocket(const Options& options) {
  double wait_s = options.duration_s > 0 ? options.duration_s : 10;
  std::uint64_t deadline = NowNs() + static_cast<std::uint64_t>(wait_s * 1e9);
  int type = options.protocol == Protocol::kUwsgi ? SOCK_STREAM : SOCK_SEQPACKET;
  while (NowNs() < deadline) {
    if (ConnectUnix(options.socket, type)) return 0;
    usleep(200);
  }
  std::fprintf(stderr, "nsbroker-bench: %s does not accept connections after %.1f s\n",
               options.socket.c_str(), wait_s);
  return 1;
}

[[noreturn]] void Usage(const char* problem) {
  if (problem != nullptr) std::fprintf(stderr, "nsbroker-bench: %s\n", problem);
  std::fprintf(stderr,
               "usage: nsbroker-bench --socket PATH [--target NAME] [--protocol native|uwsgi]\n"
               "         [--mode connect|persistent] [--clients N] [--duration S | --count N]\n"
               "         [--max-seconds S] [--label NAME] [--expect-fds N] [--kv]\n"
               "       nsbroker-bench --socket PATH --hold N [--duration S]\n"
               "       nsbroker-bench --socket PATH --wait-socket [--duration S]\n"
               "       nsbroker-bench --socket PATH --describe [--target NAME]\n"
               "       nsbroker-bench --socket PATH --status\n"
               "  --cycle N: ask for targets NAME1..NAMEN in turn instead of NAME\n");
  std::exit(2);
}

Options ParseOptions(int argc, char** argv) {
  static const option kLong[] = {{"socket", required_argument, nullptr, 's'},
                                 {"target", required_argument, nullptr, 't'},
                                 {"protocol", required_argument, nullptr, 'P'},
                                 {"mode", required_argument, nullptr, 'm'},
                                 {"clients", required_argument, nullptr, 'c'},
                                 {"duration", required_argument, nullptr, 'd'},
                                 {"count", required_argument, nullptr, 'n'},
                                 {"label", required_argument, nullptr, 'l'},
                                 {"expect-fds", required_argument, nullptr, 'e'},
                                 {"max-seconds", required_argument, nullptr, 'M'},
                                 {"hold", required_argument, nullptr, 'H'},
                                 {"wait-socket", no_argument, nullptr, 'w'},
                                 {"describe", no_argument, nullptr, 'D'},
                                 {"status", no_argument, nullptr, 'S'},
                                 {"cycle", required_argument, nullptr, 'C'},
                                 {"kv", no_argument, nullptr, 'k'},
                                 {"help", no_argument, nullptr, 'h'},
                                 {nullptr, 0, nullptr, 0}};
  Options o;
  int c;
  while ((c = getopt_long(argc, argv, "s:t:c:d:n:", kLong, nullptr)) != -1) {
    switch (c) {
      case 's':
        o.socket = optarg;
        break;
      case 't':
        o.target = optarg;
        break;
      case 'l':
        o.label = optarg;
        break;
      case 'P':
        if (std::strcmp(optarg, "native") == 0)
          o.protocol = Protocol::kNative;
        else if (std::strcmp(optarg, "uwsgi") == 0)
          o.protocol = Protocol::kUwsgi;
        else
          Usage("--protocol is native or uwsgi");
        break;
      case 'm':
        if (std::strcmp(optarg, "connect") == 0)
          o.persistent = false;
        else if (std::strcmp(optarg, "persistent") == 0)
          o.persistent = true;
        else
          Usage("--mode is connect or persistent");
        break;
      case 'c':
        o.clients = std::atoi(optarg);
        break;
      case 'd':
        o.duration_s = std::atof(optarg);
        break;
      case 'n':
        o.count = std::strtoull(optarg, nullptr, 10);
        break;
      case 'e':
        o.expect_fds = std::atol(optarg);
        break;
      case 'M':
        o.max_seconds = std::atof(optarg);
        break;
      case 'H':
        o.hold = std::strtoull(optarg, nullptr, 10);
        break;
      case 'w':
        o.wait_socket = true;
        break;
      case 'D':
        o.describe = true;
        break;
      case 'S':
        o.status = true;
        break;
      case 'C':
        o.cycle = std::strtoull(optarg, nullptr, 10);
        break;
      case 'k':
        o.kv = true;
        break;
      case 'h':
        Usage(nullptr);
      default:
        Usage(nullptr);
    }
  }
  if (optind != argc) Usage("unexpected argument");
  if (o.socket.empty()) Usage("--socket is required");
  if (o.clients < 1 || o.clients > 4096) Usage("--clients is 1..4096");
  if (o.duration_s < 0 || o.duration_s > 3600 || o.max_seconds <= 0 || o.max_seconds > 3600) {
    Usage("--duration and --max-seconds are 0..3600 seconds");
  }
  if (o.persistent && o.protocol == Protocol::kUwsgi) {
    Usage("uWSGI's server closes after each greeting: --protocol uwsgi is --mode connect only");
  }
  return o;
}

}  // namespace
}  // namespace nsbroker::bench

int main(int argc, char** argv) {
  using namespace nsbroker::bench;
  signal(SIGPIPE, SIG_IGN);
  Options options = ParseOptions(argc, argv);
  if (options.wait_socket) return RunWaitSocket(options);
  if (options.describe) return RunDescribe(options);
  if (options.status) return RunStatus(options);
  if (options.hold > 0) return RunHold(options);
  return RunLoad(options);
}
