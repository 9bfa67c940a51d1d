// Owns every libevent type: the event base, events with C++ callbacks, and a listener that
// accepts without spinning on EMFILE. Never knows about requests, targets or policy.
//
//   auto loop = nsbroker::EventLoop::Create();
//   nsbroker::Event ev(loop->base(), fd, EV_READ | EV_PERSIST, [&](short what) { ... });
//   ev.Add(std::chrono::milliseconds(10000));  // EV_TIMEOUT after 10 s without activity
#pragma once

#include <event2/event.h>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>

#include "nsbroker/error.h"
#include "nsbroker/unique_fd.h"

namespace nsbroker {

// unique_ptr deleter that calls a C free function; zero-size, so the pointer stays one word.
template <auto Free>
struct CFree {
  template <class T>
  void operator()(T* p) const {
    Free(p);
  }
};
using EventBasePtr = std::unique_ptr<event_base, CFree<event_base_free>>;
using EventPtr = std::unique_ptr<event, CFree<event_free>>;

class EventLoop {
 public:
  [[nodiscard]] static Result<EventLoop> Create();
  event_base* base() const { return base_.get(); }
  // Runs until Exit() or until nothing is left to wait for.
  [[nodiscard]] Result<void> Run();
  void Exit();

 private:
  EventBasePtr base_;
};

// One libevent event and its callback. Not movable: libevent holds `this` as the callback
// argument. Freed (and so removed from the loop) by the destructor.
class Event {
 public:
  using Callback = std::function<void(short what)>;
  // fd -1 with what 0 makes a timer; evsignal: fd = signal number, what = EV_SIGNAL|EV_PERSIST.
  Event(event_base* base, int fd, short what, Callback callback);
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  void Add(std::optional<std::chrono::milliseconds> timeout = std::nullopt);
  void Del();
  void Activate();  // runs the callback on the next loop iteration
  bool pending() const;

 private:
  static void Trampoline(evutil_socket_t fd, short what, void* arg);
  Callback callback_;
  EventPtr event_;
};

// A listening socket: accepts every waiting connection (non-blocking, close-on-exec) and hands
// each to `on_accept`, while `room` says one more descriptor fits the owner's budget.
// EMFILE/ENFILE (a limit lowered behind our back) and no room pause accepting for 100 ms
// instead of spinning on a readable listener that cannot be drained. Keeps ownership of the
// listening descriptor.
class Listener {
 public:
  using AcceptCallback = std::function<void(UniqueFd conn)>;
  Listener(event_base* base, UniqueFd fd, AcceptCallback on_accept,
           std::function<bool()> room = {});
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  BorrowedFd fd() const { return fd_; }

 private:
  void OnReadable();
  UniqueFd fd_;
  void Pause(const char* why);
  AcceptCallback on_accept_;
  std::function<bool()> room_;
  Event readable_;
  Event resume_;
};

}  // namespace nsbroker
