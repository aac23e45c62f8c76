// SCM_RIGHTS transfer over a blocking Unix stream socket (contract: common/fd_channel.h).
//
// Framing: send_with_fds sends the fds in messages of at most kMaxFdsPerMessage each.
// Every message must carry at least one data byte (the kernel attaches SCM_RIGHTS to a
// byte), so with c chunks the first message carries data[0, len - (c - 1)) and each of
// the c - 1 following messages one more byte of `data`. All fds therefore ride on the
// `len` bytes themselves, and recv_with_fds(len) on the other side collects all of them:
// callers never see a filler byte. A receiver that reads past `len` (to collect fds a
// peer sent in separate messages of its own) is still correct, since fds arrive with the
// first byte of the message that carried them.
// Thread safety: stateless; any thread, one sender and one receiver per socket.
#include "common/fd_channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace moepool {
namespace {

// The kernel's per-message cap (SCM_MAX_FD); a receive buffer of this size is never
// truncated by a peer that obeys the kernel's own limit.
constexpr size_t kScmMaxFd = 253;

// Sends data[0, len) with `fds` attached to the first byte; loops over short writes and
// EINTR. The fds go with the first sendmsg that succeeds.
Status send_chunk(int sock, const uint8_t* data, size_t len, const int* fds, size_t n_fds) {
  size_t sent = 0;
  bool fds_sent = n_fds == 0;
  alignas(cmsghdr) char control[CMSG_SPACE(kScmMaxFd * sizeof(int))];
  while (sent < len) {
    iovec iov{const_cast<uint8_t*>(data + sent), len - sent};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (!fds_sent) {
      std::memset(control, 0, sizeof(control));
      msg.msg_control = control;
      msg.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
      cmsghdr* cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
      std::memcpy(CMSG_DATA(cm), fds, n_fds * sizeof(int));
    }
    ssize_t n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::FromErrno("fd channel: sendmsg (" + std::to_string(n_fds) + " fds)", errno);
    }
    fds_sent = true;
    sent += static_cast<size_t>(n);
  }
  return Status::Ok();
}

void close_from(std::vector<int>* fds, size_t first) {
  for (size_t i = first; i < fds->size(); ++i) ::close((*fds)[i]);
  fds->resize(first);
}

}  // namespace

Status send_with_fds(int sock, const void* data, size_t len, const std::vector<int>& fds) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  size_t chunks = (fds.size() + kMaxFdsPerMessage - 1) / kMaxFdsPerMessage;
  if (chunks == 0) chunks = 1;
  if (len < chunks) {
    return InvalidArgument("fd channel: " + std::to_string(fds.size()) + " fds need at least " +
                           std::to_string(chunks) + " data bytes to ride on, got " +
                           std::to_string(len));
  }
  size_t first_len = len - (chunks - 1);
  size_t fd_pos = 0;
  for (size_t c = 0; c < chunks; ++c) {
    size_t n_fds = std::min(kMaxFdsPerMessage, fds.size() - fd_pos);
    const uint8_t* part = c == 0 ? bytes : bytes + first_len + (c - 1);
    size_t part_len = c == 0 ? first_len : 1;
    MOEPOOL_RETURN_IF_ERROR(send_chunk(sock, part, part_len, fds.data() + fd_pos, n_fds));
    fd_pos += n_fds;
  }
  return Status::Ok();
}

// On error the fds this call received are closed and removed from `*fds`, so a failed
// receive leaks nothing; fds that were in `*fds` before the call are untouched.
Status recv_with_fds(int sock, void* data, size_t len, std::vector<int>* fds) {
  auto* bytes = static_cast<uint8_t*>(data);
  const size_t fds_before = fds->size();
  size_t got = 0;
  alignas(cmsghdr) char control[CMSG_SPACE(kScmMaxFd * sizeof(int))];
  while (got < len) {
    iovec iov{bytes + got, len - got};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      close_from(fds, fds_before);
      if (err == EAGAIN || err == EWOULDBLOCK) {
        return Unavailable("fd channel: timed out after " + std::to_string(got) + " of " +
                           std::to_string(len) + " bytes");
      }
      return Status::FromErrno("fd channel: recvmsg", err);
    }
    // Take every fd that arrived before looking at anything else, so none leaks.
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      size_t n_fds = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
      const auto* p = reinterpret_cast<const uint8_t*>(CMSG_DATA(cm));
      for (size_t i = 0; i < n_fds; ++i) {
        int fd;
        std::memcpy(&fd, p + i * sizeof(int), sizeof(int));
        fds->push_back(fd);
      }
    }
    if (msg.msg_flags & MSG_CTRUNC) {
      close_from(fds, fds_before);
      return ResourceExhausted(
          "fd channel: the kernel dropped descriptors (MSG_CTRUNC): more than " +
          std::to_string(kScmMaxFd) + " in one message, or this process is out of fds");
    }
    if (n == 0) {
      close_from(fds, fds_before);
      return Unavailable("fd channel: peer closed the connection after " + std::to_string(got) +
                         " of " + std::to_string(len) + " bytes");
    }
    got += static_cast<size_t>(n);
  }
  return Status::Ok();
}

}  // namespace moepool
