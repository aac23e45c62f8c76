#include "daemon/listener.h"

#include <grpcpp/server_posix.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "daemon/unix_socket.h"

namespace moepool {

Status Listener::start(const std::string& path, unsigned mode, grpc::Server* server) {
  server_ = server;
  return accept_.start(path, mode, SOCK_NONBLOCK | SOCK_CLOEXEC, [this](int conn) { on_accept(conn); });
}

void Listener::stop() { accept_.stop(); }

void Listener::on_accept(int conn) {
  auto cred = peer_cred(conn);
  if (!cred.ok()) {
    spdlog::warn("dropping a connection without peer credentials: {}", cred.status().message());
    close(conn);
    return;
  }
  {
    // A reused fd number overwrites the entry of the connection that closed it.
    std::lock_guard<std::mutex> lock(mu_);
    peers_[conn] = *cred;
  }
  spdlog::debug("connection fd {} from pid {} uid {}", conn, cred->pid, cred->uid);
  grpc::AddInsecureChannelFromFd(server_, conn);  // gRPC owns and closes the fd now
}

std::optional<PeerCred> Listener::peer_of(const std::string& grpc_peer) const {
  // gRPC names fd-backed connections "fd:<n>".
  if (grpc_peer.rfind("fd:", 0) != 0) return std::nullopt;
  int fd = std::atoi(grpc_peer.c_str() + 3);
  std::lock_guard<std::mutex> lock(mu_);
  auto it = peers_.find(fd);
  if (it == peers_.end()) return std::nullopt;
  return it->second;
}

}  // namespace moepool
