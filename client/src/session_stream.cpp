#include "session_stream.h"

#include "rpc_convert.h"

namespace moepool {
namespace {

// How long a closing client waits for the daemon to acknowledge the half-close before it
// cancels the stream (either way the daemon ends the session).
constexpr auto kCloseGrace = std::chrono::seconds(2);

}  // namespace

Result<std::unique_ptr<SessionStream>> SessionStream::open(
    v1::Worker::Stub* stub, uint64_t session_id, const std::string& token,
    std::chrono::milliseconds welcome_timeout) {
  std::unique_ptr<SessionStream> s(new SessionStream());
  s->session_id_ = session_id;
  s->stream_ = stub->Session(&s->context_);
  if (!s->stream_) return Unavailable("Session: could not open the session stream");
  s->reader_ = std::thread([p = s.get()] { p->read_loop(); });

  std::unique_lock<std::mutex> lk(s->mu_);
  v1::SessionMessage hello;
  hello.mutable_hello()->set_session_id(session_id);
  hello.mutable_hello()->set_token(token);
  // Under mu_: the reader may not Finish() while a Write is in progress.
  bool written = s->stream_->Write(hello);
  s->cv_.wait_for(lk, welcome_timeout,
                  [&] { return s->welcomed_ || s->ended_ || !s->protocol_error_.ok(); });
  if (s->welcomed_) return s;
  Status err;
  if (!s->protocol_error_.ok()) {
    err = s->protocol_error_;
  } else if (!written && !s->ended_) {
    err =
        Unavailable("Session: could not send the hello for session " + std::to_string(session_id));
  } else if (s->ended_) {
    err = s->end_status_.ok() ? Unavailable("Session: moepoold closed the session stream")
                              : s->end_status_;
  } else {
    err = Unavailable("Session: moepoold did not welcome session " + std::to_string(session_id) +
                      " within " + std::to_string(welcome_timeout.count()) + " ms");
  }
  lk.unlock();
  s->shut_down();
  return err;
}

SessionStream::~SessionStream() { shut_down(); }

void SessionStream::read_loop() {
  v1::SessionEvent event;
  while (stream_->Read(&event)) {
    std::lock_guard<std::mutex> lk(mu_);
    if (welcomed_) continue;  // v1 defines no later events; ignore what a newer daemon sends
    if (event.has_welcome() && event.welcome().session_id() == session_id_) {
      welcomed_ = true;
    } else if (protocol_error_.ok()) {
      protocol_error_ = Internal("Session: moepoold's first event is not a welcome for session " +
                                 std::to_string(session_id_));
    }
    cv_.notify_all();
  }
  std::lock_guard<std::mutex> lk(mu_);
  ended_ = true;
  if (!closing_) {  // the daemon ended it: learn why
    grpc::Status st = stream_->Finish();
    finished_ = true;
    end_status_ = st.ok() ? Unavailable("moepoold ended session " + std::to_string(session_id_))
                          : rpc::from_grpc(st, "Session");
    if (end_status_.code() != Code::kUnavailable) {
      end_status_ = Status(Code::kUnavailable, end_status_.message());
    }
  }
  cv_.notify_all();
}

void SessionStream::shut_down() {
  {
    std::unique_lock<std::mutex> lk(mu_);
    if (closing_) return;
    closing_ = true;
    if (stream_ && !ended_) {
      stream_->WritesDone();
      cv_.wait_for(lk, kCloseGrace, [&] { return ended_; });
    }
  }
  context_.TryCancel();
  if (reader_.joinable()) reader_.join();
  std::lock_guard<std::mutex> lk(mu_);
  if (stream_ && !finished_) {
    stream_->Finish();
    finished_ = true;
  }
}

Status SessionStream::health() const {
  std::lock_guard<std::mutex> lk(mu_);
  if (!ended_) return Status::Ok();
  if (!end_status_.ok()) return end_status_;
  return Unavailable("the session stream to moepoold ended");
}

}  // namespace moepool
