#include "daemon/listener.h"

#include <fcntl.h>
#include <grpcpp/server_posix.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "daemon/unix_socket.h"

namespace moepool {

Status Listener::start(const std::string& path, unsigned mode, grpc::Server* server) {
  auto fd = listen_unix(path, mode);
  if (!fd.ok()) return fd.status();
  if (pipe2(wake_, O_CLOEXEC) != 0) return Status::FromErrno("pipe2", errno);
  path_ = path;
  listen_fd_ = *fd;
  server_ = server;
  thread_ = std::thread([this] { accept_loop(); });
  return Status::Ok();
}

void Listener::stop() {
  if (!thread_.joinable()) return;
  char b = 1;
  (void)!write(wake_[1], &b, 1);
  thread_.join();
  close(listen_fd_);
  close(wake_[0]);
  close(wake_[1]);
  unlink(path_.c_str());
}

void Listener::accept_loop() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("listener poll: {}", strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (conn < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
        spdlog::warn("accept on {}: {}", path_, strerror(errno));
      continue;
    }
    auto cred = peer_cred(conn);
    if (!cred.ok()) {
      spdlog::warn("dropping a connection without peer credentials: {}", cred.status().message());
      close(conn);
      continue;
    }
    {
      // A reused fd number overwrites the entry of the connection that closed it.
      std::lock_guard<std::mutex> lock(mu_);
      peers_[conn] = *cred;
    }
    spdlog::debug("connection fd {} from pid {} uid {}", conn, cred->pid, cred->uid);
    grpc::AddInsecureChannelFromFd(server_, conn);  // gRPC owns and closes the fd now
  }
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
