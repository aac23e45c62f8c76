// Serves the side channel that hands pool segment fds to attached workers
// (common/fd_channel.h has the protocol). Requests are tiny and served one at a time on
// this class's thread, each with a receive timeout so a silent peer cannot stall it.
// Thread safety: start()/stop() from the main thread.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/session_registry.h"
#include "daemon/unix_socket.h"

namespace moepool {

class FdServer {
 public:
  FdServer(SessionRegistry* sessions, std::vector<int> fds) : sessions_(sessions), fds_(std::move(fds)) {}
  ~FdServer() { stop(); }
  FdServer(const FdServer&) = delete;
  FdServer& operator=(const FdServer&) = delete;

  Status start(const std::string& path, unsigned mode);
  void stop();

 private:
  void serve(int conn);

  SessionRegistry* sessions_;
  std::vector<int> fds_;  // control segment first, then the pool segments
  AcceptThread accept_;
};

}  // namespace moepool
