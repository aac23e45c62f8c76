#include "daemon/unix_socket.h"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moepool {
namespace {

Result<sockaddr_un> make_addr(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path))
    return InvalidArgument("socket path '" + path + "' is longer than " +
                           std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  return addr;
}

}  // namespace

Result<int> listen_unix(const std::string& path, unsigned mode) {
  auto addr = make_addr(path);
  if (!addr.ok()) return addr.status();
  struct stat st;
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode))
      return FailedPrecondition("'" + path + "' exists and is not a socket; not replacing it");
    int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 &&
                connect(probe, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr)) == 0;
    if (probe >= 0) close(probe);
    if (live) return FailedPrecondition("another daemon is listening on '" + path + "'");
    unlink(path.c_str());  // stale, left by a daemon that died
  }
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("socket", errno);
  // Bind with a restrictive umask so the socket never exists with looser permissions.
  mode_t old = umask(0177);
  int rc = bind(fd, reinterpret_cast<const sockaddr*>(&*addr), sizeof(*addr));
  int err = errno;
  umask(old);
  if (rc != 0) {
    close(fd);
    return Status::FromErrno("bind " + path, err);
  }
  if (chmod(path.c_str(), mode) != 0 || listen(fd, 128) != 0) {
    err = errno;
    close(fd);
    unlink(path.c_str());
    return Status::FromErrno("listen " + path, err);
  }
  return fd;
}

Result<PeerCred> peer_cred(int fd) {
  ucred cred{};
  socklen_t len = sizeof(cred);
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return Status::FromErrno("SO_PEERCRED", errno);
  return PeerCred{cred.pid, cred.uid, cred.gid};
}

}  // namespace moepool
