// Client-side checks of moepoold's Unix socket, shared by libmoepool and moepoolctl.
// Thread safety: plain functions, any thread.
#pragma once

#include <string>

#include "common/status.h"

namespace moepool {

// Returns `code` with "cannot reach moepoold at <path>: <reason>".
Status daemon_unreachable(const std::string& path, const std::string& reason,
                          Code code = Code::kUnavailable);
// Connects a plain Unix socket to `path` to learn, with errno, why the daemon is not there
// ("No such file or directory", "Connection refused", "Permission denied") where gRPC
// would only say "unavailable". Ok if something accepts.
Status probe_daemon_socket(const std::string& path);

}  // namespace moepool
