#include "daemon/fd_server.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "common/fd_channel.h"
#include "daemon/unix_socket.h"

namespace moepool {

Status FdServer::start(const std::string& path, unsigned mode) {
  auto fd = listen_unix(path, mode);
  if (!fd.ok()) return fd.status();
  if (pipe2(wake_, O_CLOEXEC) != 0) return Status::FromErrno("pipe2", errno);
  path_ = path;
  listen_fd_ = *fd;
  thread_ = std::thread([this] { loop(); });
  return Status::Ok();
}

void FdServer::stop() {
  if (!thread_.joinable()) return;
  char b = 1;
  (void)!write(wake_[1], &b, 1);
  thread_.join();
  close(listen_fd_);
  close(wake_[0]);
  close(wake_[1]);
  unlink(path_.c_str());
}

void FdServer::loop() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    int conn = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    serve(conn);
    close(conn);
  }
}

void FdServer::serve(int conn) {
  // A worker sends its request right after connecting; a silent peer holds up the
  // (serial) channel for at most this long.
  timeval tv{0, 500 * 1000};
  setsockopt(conn, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  setsockopt(conn, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  FdReply reply;
  auto refuse = [&](const Status& st) {
    spdlog::warn("fd channel: refused a request: {}", st.message());
    reply.status = static_cast<int32_t>(st.code());
    (void)send_with_fds(conn, &reply, sizeof(reply), {});
  };
  FdRequest req;
  std::vector<int> junk;
  Status st = recv_with_fds(conn, &req, sizeof(req), &junk);
  for (int fd : junk) close(fd);  // a worker has no business sending fds
  if (!st.ok()) return refuse(st);
  if (req.magic != kFdChannelMagic) return refuse(InvalidArgument("bad magic"));
  auto cred = peer_cred(conn);
  if (!cred.ok()) return refuse(cred.status());
  auto session = sessions_->check_token(req.session_id, req.token, *cred);
  if (!session.ok()) return refuse(session.status());

  reply.fd_count = static_cast<uint32_t>(fds_.size());
  size_t sent = 0;
  bool first = true;
  while (first || sent < fds_.size()) {
    size_t n = std::min(kMaxFdsPerMessage, fds_.size() - sent);
    std::vector<int> chunk(fds_.begin() + sent, fds_.begin() + sent + n);
    // The header travels with the first chunk; later chunks carry one filler byte.
    uint8_t filler = 0;
    st = first ? send_with_fds(conn, &reply, sizeof(reply), chunk)
               : send_with_fds(conn, &filler, 1, chunk);
    if (!st.ok()) {
      spdlog::warn("fd channel: sending to session {} failed: {}", req.session_id, st.message());
      return;
    }
    sent += n;
    first = false;
  }
  spdlog::debug("fd channel: sent {} fds to session {}", fds_.size(), req.session_id);
}

}  // namespace moepool
