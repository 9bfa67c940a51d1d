// The loop's driver of an oci state query (oci_state.h): libevent watches what QueryStateNow
// watches with ppoll, and the query decides.
#include <chrono>

#include "loop.h"
#include "oci_state.h"
#include "resolution.h"

namespace nsbroker {
namespace {

class ContainerResolution : public Resolution {
 public:
  ContainerResolution(const TargetSpec& spec, ResolveDone done, std::unique_ptr<StateQuery> query)
      : spec_(spec), done_(std::move(done)), query_(std::move(query)) {}

  void Watch(event_base* base) {
    out_ = WatchStream(base, StateQuery::Stream::kOut);
    err_ = WatchStream(base, StateQuery::Stream::kErr);
    exit_ = std::make_unique<Event>(base, query_->pidfd(), EV_READ, [this](short) {
      if (answered_) return query_->Reap();
      Settle(query_->OnExit());
    });
    timeout_ = std::make_unique<Event>(base, -1, 0, [this](short) { Settle(query_->OnTimeout()); });
    out_->Add();
    err_->Add();
    exit_->Add();
    timeout_->Add(query_->timeout());
  }

 private:
  std::unique_ptr<Event> WatchStream(event_base* base, StateQuery::Stream stream) {
    return std::make_unique<Event>(base, query_->fd(stream), EV_READ | EV_PERSIST,
                                   [this, stream](short) {
                                     auto answer = query_->OnReadable(stream);
                                     if (answer) return Settle(std::move(*answer));
                                     if (!query_->open(stream)) StreamEvent(stream).Del();
                                   });
  }
  Event& StreamEvent(StateQuery::Stream stream) {
    return stream == StateQuery::Stream::kOut ? *out_ : *err_;
  }

  // The query answered: only the runtime's exit is still watched, if it was killed, to reap it.
  void Settle(Result<OciState> state) {
    answered_ = true;
    out_->Del();
    err_->Del();
    timeout_->Del();
    ResolveDone done = std::move(done_);
    if (!state) return done(std::unexpected(std::move(state.error())));
    done(OpenContainer(spec_, *state));
  }

  const TargetSpec& spec_;
  ResolveDone done_;
  bool answered_ = false;
  // Before the events, so that they are freed before the query closes what they watch.
  std::unique_ptr<StateQuery> query_;
  std::unique_ptr<Event> out_, err_, exit_, timeout_;
};

}  // namespace

Result<std::unique_ptr<Resolution>> StartResolve(event_base* base, const TargetSpec& spec,
                                                 ResolveDone done) {
  if (spec.source != SourceType::kOci) {
    return MakeError(ErrorCode::kInternal, "target '" + spec.name + "' resolves in the loop");
  }
  auto query = StateQuery::Start(spec.oci);
  if (!query) return std::unexpected(std::move(query.error()));
  auto resolution = std::make_unique<ContainerResolution>(spec, std::move(done), std::move(*query));
  resolution->Watch(base);
  return resolution;
}

}  // namespace nsbroker
