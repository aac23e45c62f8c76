// Listening Unix sockets and their peers' credentials.
// Thread safety: plain functions; any thread.
#pragma once

#include <string>

#include "common/status.h"
#include "daemon/session_registry.h"

namespace moepool {

// Creates a listening SOCK_STREAM socket at `path` with file mode `mode`. A stale socket
// file (nobody accepts on it) is replaced; a live one is an error: another daemon runs.
Result<int> listen_unix(const std::string& path, unsigned mode);
// SO_PEERCRED of a connected Unix socket.
Result<PeerCred> peer_cred(int fd);

}  // namespace moepool
