#include "loop.h"

#include <sys/socket.h>

#include <cstdlib>
#include <cstring>

#include "audit.h"

namespace nsbroker {

Result<EventLoop> EventLoop::Create() {
  EventLoop loop;
  loop.base_.reset(event_base_new());
  if (!loop.base_) return MakeError(ErrorCode::kInternal, "event_base_new failed");
  return loop;
}

Result<void> EventLoop::Run() {
  if (event_base_dispatch(base_.get()) < 0) {
    return MakeError(ErrorCode::kInternal, "event_base_dispatch failed");
  }
  return {};
}

void EventLoop::Exit() { event_base_loopbreak(base_.get()); }

Event::Event(event_base* base, int fd, short what, Callback callback)
    : callback_(std::move(callback)), event_(event_new(base, fd, what, &Trampoline, this)) {
  if (!event_) {
    // Only allocation failure; a broker that cannot build its events cannot serve.
    LogLine("event_new failed");
    std::abort();
  }
}

void Event::Trampoline(evutil_socket_t, short what, void* arg) {
  static_cast<Event*>(arg)->callback_(what);
}

void Event::Add(std::optional<std::chrono::milliseconds> timeout) {
  if (timeout) {
    timeval tv{static_cast<time_t>(timeout->count() / 1000),
               static_cast<suseconds_t>((timeout->count() % 1000) * 1000)};
    event_add(event_.get(), &tv);
  } else {
    event_add(event_.get(), nullptr);
  }
}

void Event::Del() { event_del(event_.get()); }

void Event::Activate() { event_active(event_.get(), EV_TIMEOUT, 0); }

bool Event::pending() const {
  return event_pending(event_.get(), EV_READ | EV_WRITE | EV_TIMEOUT | EV_SIGNAL, nullptr) != 0;
}

Listener::Listener(event_base* base, UniqueFd fd, AcceptCallback on_accept,
                   std::function<bool()> room)
    : fd_(std::move(fd)),
      on_accept_(std::move(on_accept)),
      room_(std::move(room)),
      readable_(base, fd_.get(), EV_READ | EV_PERSIST, [this](short) { OnReadable(); }),
      resume_(base, -1, 0, [this](short) { readable_.Add(); }) {
  readable_.Add();
}

void Listener::Pause(const char* why) {
  LogLine(std::string("accept: ") + why + "; pausing accepts for 100 ms");
  readable_.Del();
  resume_.Add(std::chrono::milliseconds(100));
}

void Listener::OnReadable() {
  // Bounded, so that one busy listener cannot starve established connections.
  for (int i = 0; i < 64; ++i) {
    if (room_ && !room_()) return Pause("no room in the descriptor budget");
    UniqueFd conn(accept4(fd_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
    if (conn.valid()) {
      on_accept_(std::move(conn));
      continue;
    }
    if (errno == EINTR || errno == ECONNABORTED) continue;
    if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
      Pause(std::strerror(errno));
    }
    return;
  }
}

}  // namespace nsbroker
