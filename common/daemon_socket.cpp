#include "common/daemon_socket.h"

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace moepool {

Status daemon_unreachable(const std::string& path, const std::string& reason, Code code) {
  return {code, "cannot reach moepoold at " + path + ": " + reason};
}

Status probe_daemon_socket(const std::string& path) {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.empty()) return InvalidArgument("moepoold socket path is empty");
  if (path.size() >= sizeof(addr.sun_path)) {
    return InvalidArgument("moepoold socket path is longer than " +
                           std::to_string(sizeof(addr.sun_path) - 1) + " bytes: " + path);
  }
  std::memcpy(addr.sun_path, path.data(), path.size());
  int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return Status::FromErrno("socket", errno);
  int rc;
  do {
    rc = ::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr));
  } while (rc != 0 && errno == EINTR);
  int err = errno;
  ::close(fd);
  if (rc == 0) return Status::Ok();
  Code code = (err == EACCES || err == EPERM) ? Code::kPermissionDenied : Code::kUnavailable;
  return daemon_unreachable(path, std::strerror(err), code);
}

}  // namespace moepool
