// Holds a Worker.Session stream open for the lifetime of a Client: the daemon keeps the
// session (and its pins) exactly as long as this stream lives. A background thread reads
// the stream; when the daemon ends it, health() says so.
// Thread safety: open() and the destructor on one thread; health() from any thread.
#pragma once

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <thread>

#include "moepool/status.h"
#include "moepool/v1/moepool.grpc.pb.h"

namespace moepool {

class SessionStream {
 public:
  // Opens the stream, sends Hello{session_id, token} and waits up to `welcome_timeout`
  // for the daemon's Welcome.
  static Result<std::unique_ptr<SessionStream>> open(v1::Worker::Stub* stub, uint64_t session_id,
                                                     const std::string& token,
                                                     std::chrono::milliseconds welcome_timeout);
  // Half-closes the stream (the daemon ends the session), cancels it and joins the reader.
  ~SessionStream();
  SessionStream(const SessionStream&) = delete;
  SessionStream& operator=(const SessionStream&) = delete;

  // Returns ok while the daemon keeps the session, else why it ended (kUnavailable).
  Status health() const;

 private:
  SessionStream() = default;
  void read_loop();
  // Ends the stream from this side and joins the reader; safe to call twice.
  void shut_down();

  uint64_t session_id_ = 0;
  grpc::ClientContext context_;  // outlives stream_ (declared first)
  std::unique_ptr<grpc::ClientReaderWriter<v1::SessionMessage, v1::SessionEvent>> stream_;
  std::thread reader_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool welcomed_ = false;  // guarded by mu_
  bool ended_ = false;     // guarded by mu_: Read() returned false
  bool closing_ = false;   // guarded by mu_: shut_down() started; the reader must not Finish
  bool finished_ = false;  // guarded by mu_: Finish() was called
  Status end_status_;      // guarded by mu_
  Status protocol_error_;  // guarded by mu_: the first event was not a matching Welcome
};

}  // namespace moepool
