// The worker's side of the fd side channel (common/fd_channel.h): fetches the control
// and pool segment fds of an attached session.
// Thread safety: a plain function; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "moepool/status.h"

namespace moepool {

// Owns a list of fds and closes them on destruction.
class FdList {
 public:
  FdList() = default;
  FdList(FdList&& o) noexcept : fds_(std::exchange(o.fds_, {})) {}
  FdList& operator=(FdList&&) = delete;
  ~FdList();
  // Takes ownership of every fd in `*fds` and clears it.
  void adopt(std::vector<int>* fds) {
    fds_.insert(fds_.end(), fds->begin(), fds->end());
    fds->clear();
  }
  const std::vector<int>& fds() const { return fds_; }
  size_t size() const { return fds_.size(); }

 private:
  std::vector<int> fds_;
};

// Connects to `fd_socket`, proves the session with `token` (16 bytes) and returns the
// fds the daemon sends: [0] the control segment, [1..] the pool segments in order.
// Fails within about `timeout_ms` if the daemon does not answer.
Result<FdList> fetch_segment_fds(const std::string& fd_socket, uint64_t session_id,
                                 const std::string& token, int timeout_ms);

}  // namespace moepool
