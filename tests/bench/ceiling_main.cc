// nsbroker-ceiling: the least code that does a grant server's syscalls on epoll (accept4,
// SO_PEERCRED, recvmsg, sendmsg with SCM_RIGHTS), so that every broker figure can be given
// as a ratio to what the kernel allows on this machine. No policy, no request parsing, no
// audit: never deploy it; it hands the target's namespaces to anyone who can connect.
//
//   nsbroker-ceiling --socket /tmp/c.sock --pid 4242 [--kinds net,uts,...,root,cwd]
//   nsbroker-ceiling --uwsgi --socket /tmp/u.sock --pid 4242 --kinds
//   net,uts,ipc,pid,cgroup,time,mnt
//
// With --uwsgi it speaks uWSGI's setns-socket format instead (SOCK_STREAM; on accept, one
// sendmsg of the 15-byte greeting and the descriptors, in --kinds order, then close).
// The reply is a valid nsbroker.v1.Response grant, serialized once at start-up, so that the
// same nsbroker-bench client runs against this server and against nsbrokerd.
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "nsbroker/ns_kind.h"
#include "nsbroker/unique_fd.h"
#include "nsbroker/uwsgi_format.h"
#include "wire.h"

namespace nsbroker::bench {
namespace {

// What a grant for "every kind" holds for a process target: its namespaces plus ROOT and CWD.
constexpr std::string_view kDefaultKinds = "cgroup,ipc,mnt,net,pid,time,user,uts,root,cwd";
constexpr int kMaxEvents = 64;

[[noreturn]] void Die(const std::string& message) {
  std::fprintf(stderr, "nsbroker-ceiling: %s\n", message.c_str());
  std::exit(1);
}

struct Reply {
  std::string bytes;
  std::vector<UniqueFd> fds;
  std::vector<int> raw;  // the same descriptors, laid out for SCM_RIGHTS
  std::vector<char> control;
};

// Opens /proc/PID/ns/KIND (or /proc/PID/root|cwd as O_PATH directories) for every kind, and
// serializes the Response that describes them.
Reply BuildReply(pid_t pid, std::string_view kinds, const std::string& target, bool uwsgi) {
  Reply reply;
  v1::Response response;
  response.set_protocol_version(kProtocolVersion);
  v1::Grant* grant = response.mutable_grant();
  grant->set_target(target);
  while (!kinds.empty()) {
    std::size_t comma = kinds.find(',');
    std::string_view name = kinds.substr(0, comma);
    kinds = comma == std::string_view::npos ? std::string_view() : kinds.substr(comma + 1);
    auto kind = KindFromName(name);
    if (!kind || *kind == NsKind::kJail) Die("unknown kind '" + std::string(name) + "'");
    bool dir = *kind == NsKind::kRoot || *kind == NsKind::kCwd;
    std::string path =
        "/proc/" + std::to_string(pid) + (dir ? "/" : "/ns/") + std::string(KindProcFile(*kind));
    UniqueFd fd(open(path.c_str(), dir ? O_PATH | O_DIRECTORY | O_CLOEXEC : O_RDONLY | O_CLOEXEC));
    if (!fd.valid()) Die("open " + path + ": " + std::strerror(errno));
    struct stat st;
    if (fstat(fd.get(), &st) != 0) Die("fstat " + path + ": " + std::strerror(errno));
    v1::Grant::Entry* entry = grant->add_entries();
    entry->set_kind(static_cast<v1::Kind>(KindToWire(*kind)));
    entry->set_inode(st.st_ino);
    entry->set_device(st.st_dev);
    entry->set_fd_index(static_cast<std::uint32_t>(reply.fds.size()));
    reply.raw.push_back(fd.get());
    reply.fds.push_back(std::move(fd));
  }
  if (reply.fds.empty() || reply.fds.size() > kMaxFdsPerMessage) Die("1..253 kinds, please");
  if (!response.SerializeToString(&reply.bytes)) Die("cannot serialize the grant");
  if (uwsgi) {
    int count = static_cast<int>(reply.fds.size());
    reply.bytes = kUwsgiMagic;
    reply.bytes.append(reinterpret_cast<const char*>(&count), sizeof count);
  }
  reply.control.assign(CMSG_SPACE(reply.raw.size() * sizeof(int)), 0);
  return reply;
}

UniqueFd Listen(const std::string& path, int type) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) Die("socket path too long: " + path);
  std::memcpy(addr.sun_path, path.data(), path.size());
  UniqueFd sock(socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock.valid()) Die(std::string("socket: ") + std::strerror(errno));
  unlink(path.c_str());
  if (bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) != 0) {
    Die("bind " + path + ": " + std::strerror(errno));
  }
  if (listen(sock.get(), SOMAXCONN) != 0) Die(std::string("listen: ") + std::strerror(errno));
  return sock;
}

void Add(BorrowedFd epoll, BorrowedFd fd) {
  epoll_event ev{.events = EPOLLIN, .data = {.fd = fd.get()}};
  if (epoll_ctl(epoll.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
    Die(std::string("epoll_ctl: ") + std::strerror(errno));
  }
}

bool Send(BorrowedFd conn, Reply& reply);

// Answers one request datagram with the grant; false when the connection is done (closed by
// the client, or any error: this server never retries).
bool Serve(BorrowedFd conn, Reply& reply) {
  char request[4096];
  char control[CMSG_SPACE(16 * sizeof(int))];
  iovec iov{request, sizeof(request)};
  msghdr in{};
  in.msg_iov = &iov;
  in.msg_iovlen = 1;
  in.msg_control = control;
  in.msg_controllen = sizeof(control);
  ssize_t n = recvmsg(conn.get(), &in, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
  if (n < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  // Descriptors a client sends are closed unread, as the broker must.
  for (cmsghdr* c = CMSG_FIRSTHDR(&in); c != nullptr; c = CMSG_NXTHDR(&in, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    for (std::size_t i = 0; i < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); ++i) {
      int fd;
      std::memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      UniqueFd unwanted(fd);
    }
  }
  if (n <= 0) return false;
  return Send(conn, reply);
}

bool Send(BorrowedFd conn, Reply& reply) {
  iovec out_iov{reply.bytes.data(), reply.bytes.size()};
  msghdr out{};
  out.msg_iov = &out_iov;
  out.msg_iovlen = 1;
  out.msg_control = reply.control.data();
  out.msg_controllen = reply.control.size();
  cmsghdr* c = CMSG_FIRSTHDR(&out);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(reply.raw.size() * sizeof(int));
  std::memcpy(CMSG_DATA(c), reply.raw.data(), reply.raw.size() * sizeof(int));
  return sendmsg(conn.get(), &out, MSG_NOSIGNAL | MSG_DONTWAIT) ==
         static_cast<ssize_t>(reply.bytes.size());
}

int Run(const std::string& path, pid_t pid, std::string_view kinds, const std::string& target,
        bool uwsgi) {
  Reply reply = BuildReply(pid, kinds, target, uwsgi);
  sigset_t stop;
  sigemptyset(&stop);
  sigaddset(&stop, SIGTERM);
  sigaddset(&stop, SIGINT);
  sigprocmask(SIG_BLOCK, &stop, nullptr);
  UniqueFd signals(signalfd(-1, &stop, SFD_CLOEXEC | SFD_NONBLOCK));
  UniqueFd epoll(epoll_create1(EPOLL_CLOEXEC));
  if (!signals.valid() || !epoll.valid()) Die(std::string("setup: ") + std::strerror(errno));
  UniqueFd listener = Listen(path, uwsgi ? SOCK_STREAM : SOCK_SEQPACKET);
  Add(epoll, listener);
  Add(epoll, signals);
  std::vector<UniqueFd> conns;  // indexed by descriptor number
  bool emfile_reported = false;
  epoll_event events[kMaxEvents];
  for (;;) {
    int n = epoll_wait(epoll.get(), events, kMaxEvents, -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) Die(std::string("epoll_wait: ") + std::strerror(errno));
    for (int i = 0; i < n; ++i) {
      int fd = events[i].data.fd;
      if (fd == signals.get()) {
        unlink(path.c_str());
        return 0;
      }
      if (fd == listener.get()) {
        for (;;) {
          UniqueFd conn(accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
          if (!conn.valid()) {
            if ((errno == EMFILE || errno == ENFILE) && !emfile_reported) {
              std::fprintf(stderr, "nsbroker-ceiling: accept4: %s\n", std::strerror(errno));
              emfile_reported = true;
            }
            break;
          }
          // The broker identifies every peer; so does the ceiling, to pay the same syscall.
          ucred peer;
          socklen_t len = sizeof(peer);
          if (getsockopt(conn.get(), SOL_SOCKET, SO_PEERCRED, &peer, &len) != 0) continue;
          if (uwsgi) {  // uWSGI's server: the greeting at once, then close
            (void)Send(conn, reply);
            continue;
          }
          Add(epoll, conn);
          auto slot = static_cast<std::size_t>(conn.get());
          if (conns.size() <= slot) conns.resize(slot + 1);
          conns[slot] = std::move(conn);
        }
        continue;
      }
      auto slot = static_cast<std::size_t>(fd);
      if (!Serve(fd, reply)) conns[slot].reset();  // close(2) also leaves the epoll set
    }
  }
}

}  // namespace
}  // namespace nsbroker::bench

int main(int argc, char** argv) {
  static const option kLong[] = {
      {"socket", required_argument, nullptr, 's'}, {"pid", required_argument, nullptr, 'p'},
      {"kinds", required_argument, nullptr, 'k'},  {"target", required_argument, nullptr, 't'},
      {"uwsgi", no_argument, nullptr, 'u'},        {nullptr, 0, nullptr, 0}};
  bool uwsgi = false;
  std::string socket_path;
  std::string kinds(nsbroker::bench::kDefaultKinds);
  std::string target = "t";
  pid_t pid = 0;
  int c;
  while ((c = getopt_long(argc, argv, "", kLong, nullptr)) != -1) {
    switch (c) {
      case 's':
        socket_path = optarg;
        break;
      case 'p':
        pid = static_cast<pid_t>(std::atoi(optarg));
        break;
      case 'k':
        kinds = optarg;
        break;
      case 't':
        target = optarg;
        break;
      case 'u':
        uwsgi = true;
        break;
      default:
        pid = 0;
        optind = argc;
        break;
    }
  }
  if (socket_path.empty() || pid <= 0 || optind != argc) {
    std::fprintf(
        stderr,
        "usage: nsbroker-ceiling [--uwsgi] --socket PATH --pid PID [--kinds LIST] [--target N]\n"
        "  LIST: comma-separated kinds, default %s\n",
        nsbroker::bench::kDefaultKinds.data());
    return 2;
  }
  signal(SIGPIPE, SIG_IGN);
  return nsbroker::bench::Run(socket_path, pid, kinds, target, uwsgi);
}
