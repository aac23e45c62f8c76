#include "daemon/fd_server.h"

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
  return accept_.start(path, mode, SOCK_CLOEXEC, [this](int conn) {
    serve(conn);
    close(conn);
  });
}

void FdServer::stop() { accept_.stop(); }

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
