#include "daemon/unix_socket.h"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
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

Status AcceptThread::start(const std::string& path, unsigned mode, int flags,
                           std::function<void(int)> on_accept) {
  auto fd = listen_unix(path, mode);
  if (!fd.ok()) return fd.status();
  if (pipe2(wake_, O_CLOEXEC) != 0) {
    int err = errno;
    close(*fd);
    unlink(path.c_str());
    return Status::FromErrno("pipe2", err);
  }
  path_ = path;
  listen_fd_ = *fd;
  flags_ = flags;
  on_accept_ = std::move(on_accept);
  thread_ = std::thread([this] { loop(); });
  return Status::Ok();
}

void AcceptThread::stop() {
  if (!thread_.joinable()) return;
  char b = 1;
  (void)!write(wake_[1], &b, 1);
  thread_.join();
  close(listen_fd_);
  close(wake_[0]);
  close(wake_[1]);
  unlink(path_.c_str());
}

void AcceptThread::loop() {
  pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {wake_[0], POLLIN, 0}};
  for (;;) {
    if (poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("poll on {}: {}", path_, strerror(errno));
      return;
    }
    if (fds[1].revents) return;
    int conn = accept4(listen_fd_, nullptr, nullptr, flags_);
    if (conn < 0) {
      if (errno != EINTR && errno != EAGAIN && errno != ECONNABORTED)
        spdlog::warn("accept on {}: {}", path_, strerror(errno));
      continue;
    }
    on_accept_(conn);
  }
}

}  // namespace moepool
