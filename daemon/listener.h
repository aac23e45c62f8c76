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
#include <unordered_map>

#include "common/status.h"
#include "daemon/session_registry.h"
#include "daemon/unix_socket.h"

namespace moepool {

class Listener {
 public:
  Listener() = default;
  ~Listener() { stop(); }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Listens on `path` and starts the accept thread feeding `server`.
  Status start(const std::string& path, unsigned mode, grpc::Server* server);
  // Stops accepting and removes the socket file. Idempotent.
  void stop();
  // The credentials of the connection a call arrived on (its grpc peer string).
  std::optional<PeerCred> peer_of(const std::string& grpc_peer) const;

 private:
  void on_accept(int conn);

  grpc::Server* server_ = nullptr;
  AcceptThread accept_;
  mutable std::mutex mu_;
  std::unordered_map<int, PeerCred> peers_;  // by connection fd
};

}  // namespace moepool
