#include "raw_client.h"

#include <fcntl.h>
#include <grp.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "harness.h"
#include "wire.h"

namespace nsbroker::testing {

Result<UniqueFd> Connect(const std::string& path) {
  UniqueFd fd(socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return SysError("socket");
  timeval tv{5, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    return SysError("connect " + path);
  }
  return fd;
}

Result<Reply> Receive(BorrowedFd sock) {
  auto datagram = ReceiveDatagram(sock, kMaxFdsPerMessage);
  if (!datagram) return std::unexpected(std::move(datagram.error()));
  auto response = DecodeResponse(datagram->bytes, datagram->fds.size());
  if (!response) return std::unexpected(std::move(response.error()));
  return Reply{std::move(*response), std::move(datagram->fds)};
}

Result<Reply> Call(BorrowedFd sock, const v1::Request& request) {
  if (auto sent = SendMessage(sock, request); !sent) return std::unexpected(sent.error());
  return Receive(sock);
}

Result<Reply> CallOnce(const std::string& path, const v1::Request& request) {
  auto sock = Connect(path);
  if (!sock) return std::unexpected(std::move(sock.error()));
  return Call(*sock, request);
}

v1::Request JoinRequest(const std::string& target, std::vector<v1::Kind> kinds) {
  v1::Request r;
  r.set_protocol_version(kProtocolVersion);
  r.mutable_join()->set_target(target);
  for (auto k : kinds) r.mutable_join()->add_kinds(k);
  return r;
}

v1::Request StatusRequest() {
  v1::Request r;
  r.set_protocol_version(kProtocolVersion);
  r.mutable_status();
  return r;
}

std::string Summary(const Result<Reply>& reply) {
  if (!reply) return "CLIENT ERROR: " + reply.error().message;
  const v1::Response& r = reply->response;
  if (r.has_error()) return v1::Error::Code_Name(r.error().code()) + ": " + r.error().message();
  if (r.has_grant()) {
    std::string out = "GRANT ";
    for (int i = 0; i < r.grant().entries_size(); ++i) {
      if (i > 0) out += ',';
      out += KindName(static_cast<NsKind>(r.grant().entries(i).kind()));
    }
    return out;
  }
  if (r.has_targets()) return "TARGETS";
  if (r.has_status()) return "STATUS";
  return "EMPTY";
}

std::string Code(const Result<Reply>& reply) {
  std::string s = Summary(reply);
  if (s.rfind("CLIENT ERROR", 0) == 0) return "CLIENT ERROR";
  return s.substr(0, s.find_first_of(" :"));
}

std::string AsUser(uid_t uid, gid_t gid, const std::function<std::string()>& fn,
                   std::size_t nofile) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) return "pipe failed";
  UniqueFd r(p[0]), w(p[1]);
  pid_t pid = fork();
  if (pid < 0) return "fork failed";
  if (pid == 0) {
    if (nofile > 0) {
      rlimit lim{nofile, nofile};
      if (setrlimit(RLIMIT_NOFILE, &lim) != 0) _exit(5);
    }
    if (setgroups(0, nullptr) != 0 || setresgid(gid, gid, gid) != 0 ||
        setresuid(uid, uid, uid) != 0) {
      _exit(3);
    }
    std::string out = fn();
    if (write(w.get(), out.data(), out.size()) != static_cast<ssize_t>(out.size())) _exit(4);
    _exit(0);
  }
  ChildProcess child(pid);
  w.reset();
  std::string out;
  char buf[4096];
  ssize_t n;
  while ((n = read(r.get(), buf, sizeof buf)) > 0) out.append(buf, static_cast<std::size_t>(n));
  int status = child.Wait(std::chrono::seconds(60));
  if (status != 0) return "child failed with " + std::to_string(status);
  return out;
}

std::size_t CountFdsOf(pid_t pid) {
  std::size_t n = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it("/proc/" + std::to_string(pid) + "/fd", ec), end;
       !ec && it != end; it.increment(ec)) {
    ++n;
  }
  return n;
}

std::size_t WaitForFdCount(pid_t pid, std::size_t expected, std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::size_t n = CountFdsOf(pid);
  while (n != expected && std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    n = CountFdsOf(pid);
  }
  return n;
}

long RssKib(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

long CpuTicks(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  // Fields after the command (which may hold spaces) start after the last ')'.
  std::istringstream rest(stat.substr(stat.rfind(')') + 2));
  std::string field;
  long utime = 0, stime = 0;
  for (int i = 3; rest >> field; ++i) {
    if (i == 14) utime = std::stol(field);
    if (i == 15) {
      stime = std::stol(field);
      break;
    }
  }
  return utime + stime;
}

namespace {

// With `sock` connected: Status until the broker counts only it.
bool OnlyClient(BorrowedFd sock) {
  for (int i = 0; i < 10000; ++i) {
    auto reply = Call(sock, StatusRequest());
    if (!reply || !reply->response.has_status()) return false;
    if (reply->response.status().active_connections() == 1) return true;
  }
  return false;
}

}  // namespace

bool WaitForNoOtherClients(const std::string& socket) {
  // Our own connection may be refused while the broker still counts the ones that closed.
  for (int i = 0; i < 10000; ++i) {
    auto sock = Connect(socket);
    if (!sock) return false;
    auto reply = Call(*sock, StatusRequest());
    if (Code(reply) == "RESOURCE_EXHAUSTED") continue;
    return reply && reply->response.has_status() &&
           (reply->response.status().active_connections() == 1 || OnlyClient(*sock));
  }
  return false;
}

std::size_t QuietFdCount(Broker& broker) {
  auto sock = Connect(broker.socket());
  if (!sock || !OnlyClient(*sock)) return 0;
  // With run_as, the descriptors that clients cost are the server's (harness.h).
  return CountFdsOf(broker.ServingPid()) - 1;
}

std::string StopCleanly(Broker& broker) {
  int status = broker.process().Stop(SIGTERM);
  if (status == 0) return "";
  std::string log = broker.log();
  if (log.size() > 6000) log = "..." + log.substr(log.size() - 6000);
  return "nsbrokerd exited with " + std::to_string(status) + ":\n" + log;
}

void RaiseNofile(std::size_t n) {
  rlimit lim{};
  getrlimit(RLIMIT_NOFILE, &lim);
  if (lim.rlim_cur >= n) return;
  lim.rlim_cur = std::min<rlim_t>(n, lim.rlim_max);
  setrlimit(RLIMIT_NOFILE, &lim);
}

}  // namespace nsbroker::testing
