#include "segment_fds.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/fd_channel.h"

namespace moepool {
namespace {

// A bound on what a sane pool can need; a larger fd_count is a corrupt header.
constexpr uint32_t kMaxPoolFds = 1u << 16;

Status code_status(int32_t code, const std::string& what) {
  if (code <= 0 || code > static_cast<int32_t>(Code::kInternal)) {
    return Internal(what + " (unknown status " + std::to_string(code) + ")");
  }
  return {static_cast<Code>(code), what};
}

}  // namespace

FdList::~FdList() {
  for (int fd : fds_) ::close(fd);
}

Result<FdList> fetch_segment_fds(const std::string& fd_socket, uint64_t session_id,
                                 const std::string& token, int timeout_ms) {
  const std::string where = "fd channel " + fd_socket;
  if (token.size() != sizeof(FdRequest{}.token)) {
    return Internal("moepoold sent a " + std::to_string(token.size()) +
                    "-byte session token, expected 16");
  }
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (fd_socket.empty() || fd_socket.size() >= sizeof(addr.sun_path)) {
    return Internal("moepoold sent an unusable fd socket path '" + fd_socket + "'");
  }
  std::memcpy(addr.sun_path, fd_socket.data(), fd_socket.size());

  int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return Status::FromErrno("socket", errno);
  std::vector<int> sock_v{sock};
  FdList sock_guard;
  sock_guard.adopt(&sock_v);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  ::setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(sock, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  int rc;
  do {
    rc = ::connect(sock, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) return Status::FromErrno("connect " + where, errno);

  FdRequest req;
  req.session_id = session_id;
  std::memcpy(req.token, token.data(), sizeof(req.token));
  Status st = send_with_fds(sock, &req, sizeof(req), {});
  if (!st.ok()) return Status(st.code(), where + ": " + st.message());

  FdReply reply;
  FdList owned;
  std::vector<int> fds;
  st = recv_with_fds(sock, &reply, sizeof(reply), &fds);
  owned.adopt(&fds);  // closes everything on any early return below
  if (!st.ok()) return Status(st.code(), where + ": " + st.message());
  if (reply.magic != kFdChannelMagic) {
    return Internal(where + ": reply has magic " + std::to_string(reply.magic) + ", expected " +
                    std::to_string(kFdChannelMagic));
  }
  if (reply.status != 0) {
    return code_status(reply.status,
                       where + ": moepoold refused to hand out the pool (see its log)");
  }
  if (reply.fd_count == 0 || reply.fd_count > kMaxPoolFds) {
    return Internal(where + ": reply announces " + std::to_string(reply.fd_count) + " fds");
  }
  // Later chunks of fds may arrive in messages of their own, each riding on filler bytes
  // after the header: read byte by byte until all announced fds are here.
  while (owned.size() < reply.fd_count) {
    uint8_t filler;
    st = recv_with_fds(sock, &filler, 1, &fds);
    owned.adopt(&fds);
    if (!st.ok()) {
      return Status(st.code(), where + ": received " + std::to_string(owned.size()) + " of " +
                                   std::to_string(reply.fd_count) + " fds: " + st.message());
    }
  }
  if (owned.size() != reply.fd_count) {
    return Internal(where + ": received " + std::to_string(owned.size()) +
                    " fds, the reply announced " + std::to_string(reply.fd_count));
  }
  return owned;
}

}  // namespace moepool
