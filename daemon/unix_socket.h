// Listening Unix sockets and their peers' credentials.
// Thread safety: plain functions; any thread.
#pragma once

#include <functional>
#include <string>
#include <thread>

#include "common/status.h"
#include "daemon/session_registry.h"

namespace moepool {

// Creates a listening SOCK_STREAM socket at `path` with file mode `mode`. A stale socket
// file (nobody accepts on it) is replaced; a live one is an error: another daemon runs.
Result<int> listen_unix(const std::string& path, unsigned mode);
// SO_PEERCRED of a connected Unix socket.
Result<PeerCred> peer_cred(int fd);

// Accepts connections on a listening Unix socket on its own thread and hands each one to
// `on_accept`, which then owns the fd. Used by both of the daemon's sockets.
// Thread safety: start() and stop() from one thread (main); on_accept runs on this
// class's thread.
class AcceptThread {
 public:
  AcceptThread() = default;
  ~AcceptThread() { stop(); }
  AcceptThread(const AcceptThread&) = delete;
  AcceptThread& operator=(const AcceptThread&) = delete;

  // Listens on `path` (see listen_unix) and starts accepting with accept4(`flags`).
  Status start(const std::string& path, unsigned mode, int flags, std::function<void(int)> on_accept);
  // Stops accepting, closes the socket and removes its file. Idempotent.
  void stop();

 private:
  void loop();

  std::string path_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  int flags_ = 0;
  std::function<void(int)> on_accept_;
  std::thread thread_;
};

}  // namespace moepool
