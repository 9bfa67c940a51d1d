// Owns nsbrokerd's uWSGI setns-socket compatible listener: the greeting format, the send
// order, and the life of each connection. Never decides or audits itself (Server::Join does).
//
//   auto fd = nsbroker::BindUwsgiSocket(config);   // config.uwsgi_socket, SOCK_STREAM
//   nsbroker::UwsgiListener uwsgi(server, std::move(*fd));  // then `uwsgi --setns PATH` works
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "config.h"
#include "handler.h"
#include "loop.h"
#include "nsbroker.pb.h"
#include "nsbroker/error.h"
#include "nsbroker/ns_kind.h"
#include "nsbroker/unique_fd.h"
#include "nsbroker/uwsgi_format.h"
#include "policy.h"

namespace nsbroker {

class Server;

// The greeting's format (magic, count, one SCM_RIGHTS message): nsbroker/uwsgi_format.h,
// shared with libnsjoin's client.

// What goes out, in this order. uWSGI's client calls setns(fd, 0) on each in turn and stops
// at the first failure, so: never USER (root entering a user namespace loses its
// capabilities over the host-owned namespaces that follow; uWSGI's own server never sends
// it), and mnt last, after which the joiner's root and cwd are the target's (uWSGI's own
// readdir order puts mnt before cgroup and time).
inline constexpr std::array<NsKind, 7> kUwsgiSendOrder = {
    NsKind::kNet,    NsKind::kUts,  NsKind::kIpc, NsKind::kPid,
    NsKind::kCgroup, NsKind::kTime, NsKind::kMnt};
KindSet UwsgiKinds();

// The 15 greeting bytes announcing `count` descriptors.
std::string UwsgiGreeting(int count);

// The uWSGI codec of a Decision: the descriptor numbers of a grant in kUwsgiSendOrder, each
// kind at most once, anything else (USER, ROOT, CWD) left out; nothing for a refusal.
// A uWSGI peer asks as JoinAsk{.usable = UwsgiKinds()}: all the policy lets it have.
std::vector<int> UwsgiSendList(const Decision& decision);

// Binds config.uwsgi_socket as a listening SOCK_STREAM socket with the native socket's
// socket_mode and socket_group; a stale socket file is replaced, a live one is an error.
// kInvalidRequest when uwsgi_socket is set without uwsgi_target.
[[nodiscard]] Result<UniqueFd> BindUwsgiSocket(const Config& config);

// Serves uWSGI's format for the server's current uwsgi_target. Per connection: peer from
// Server::Identify, the server's connection limits, Server::Join (policy, grant cache, audit,
// counters, per-uid descriptor budget), decided right after the loop pass's accepts (a fresh
// socket is writable: no epoll round trip); a grant is one sendmsg of greeting + descriptors
// after the turn's audit lines (Server::AfterCommit), a
// refusal closes with nothing sent. After a grant the peer sees EOF at once, as from uWSGI
// (shutdown SHUT_WR), but our end stays open, its descriptors counted as unread, until the
// peer closes it or idle_timeout_ms passes.
class UwsgiListener {
 public:
  UwsgiListener(Server& server, UniqueFd listen_fd);
  ~UwsgiListener();
  UwsgiListener(const UwsgiListener&) = delete;
  UwsgiListener& operator=(const UwsgiListener&) = delete;

  // Connections accepted and not yet closed (for tests).
  std::size_t open_connections() const { return open_.size(); }

 private:
  struct Connection;
  void OnAccept(UniqueFd fd);
  void GreetAccepted();
  void Greet(Connection& conn);
  void SendDecided();
  void Send(Connection& conn, const Decision& decision);
  void Close(Connection& conn);

  Server& server_;
  std::uint64_t next_id_ = 1;
  std::unordered_map<std::uint64_t, std::unique_ptr<Connection>> open_;
  // Closed connections wait here until the loop is out of their callbacks; reap_ empties it.
  std::vector<std::unique_ptr<Connection>> graveyard_;
  Event reap_;
  // Connections accepted in this loop pass, greeted by greet_ once the accepts are done.
  std::vector<std::uint64_t> accepted_;
  std::vector<std::uint64_t> greeting_;
  Event greet_;
  // Decided, sent by SendDecided after the audit lines of their turn.
  struct Decided {
    std::uint64_t id = 0;
    Decision decision;
  };
  std::vector<Decided> decided_;
  std::vector<Decided> sending_;
  Listener listener_;  // last: destroyed first, so no accept can reach a half-destroyed this
};

}  // namespace nsbroker
