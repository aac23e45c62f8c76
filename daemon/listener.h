// Accepts worker connections on the gRPC Unix socket itself, so that every connection's
// peer (SO_PEERCRED) is known before gRPC serves it, then hands the fd to the gRPC
// server (grpc::AddInsecureChannelFromFd). Handlers map a call back to its peer through
// the call's peer string, "fd:<n>".
// Thread safety: start()/stop() from the main thread; peer_of() from any thread.
#pragma once

#include <grpcpp/server.h>

#include <atomic>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>

#include "common/status.h"
#include "daemon/session_registry.h"

namespace moepool {

class Listener {
 public:
  Listener() = default;
  ~Listener() { stop(); }

  // Listens on `path` and starts the accept thread feeding `server`.
  Status start(const std::string& path, unsigned mode, grpc::Server* server);
  // Stops accepting and removes the socket file. Idempotent.
  void stop();
  // The credentials of the connection a call arrived on (its grpc peer string).
  std::optional<PeerCred> peer_of(const std::string& grpc_peer) const;

 private:
  void accept_loop();

  std::string path_;
  int listen_fd_ = -1;
  int wake_[2] = {-1, -1};
  grpc::Server* server_ = nullptr;
  std::thread thread_;
  mutable std::mutex mu_;
  std::unordered_map<int, PeerCred> peers_;  // by connection fd
};

}  // namespace moepool
