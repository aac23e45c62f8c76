// The side channel that hands pool segment fds to a worker (gRPC cannot carry fds).
//
// Protocol, on a Unix stream socket at AttachReply.fd_socket:
//   worker -> daemon: FdRequest (session id + 16-byte token from AttachReply)
//   daemon -> worker: FdReply header, with SCM_RIGHTS carrying fd_count descriptors:
//                     [0] the control segment (slot table), [1..] pool segments in order.
//                     At most kMaxFdsPerMessage fds ride on one message: the first
//                     message carries the FdReply header, each later one a single zero
//                     byte, until fd_count fds have been sent.
//   then the daemon closes the connection.
// The daemon serves a request only if the token matches the session and the peer's
// SO_PEERCRED uid equals the session's uid (pid too when the session has one).
#pragma once

#include <cstdint>
#include <vector>

#include "moepool/status.h"

namespace moepool {

inline constexpr uint32_t kFdChannelMagic = 0x4D504644;  // "MPFD"
inline constexpr size_t kMaxFdsPerMessage = 250;         // below SCM_MAX_FD (253)

struct FdRequest {
  uint32_t magic = kFdChannelMagic;
  uint32_t reserved = 0;
  uint64_t session_id = 0;
  uint8_t token[16] = {};
};

struct FdReply {
  uint32_t magic = kFdChannelMagic;
  int32_t status = 0;     // 0 ok, else a moepool::Code value
  uint32_t fd_count = 0;  // total fds that follow over one or more messages
  uint32_t reserved = 0;
};

// Sends `len` bytes of `data` with `fds` attached (SCM_RIGHTS). Blocking socket.
Status send_with_fds(int sock, const void* data, size_t len, const std::vector<int>& fds);
// Receives exactly `len` bytes into `data`, appending any fds that arrive to `fds`.
Status recv_with_fds(int sock, void* data, size_t len, std::vector<int>* fds);

}  // namespace moepool
