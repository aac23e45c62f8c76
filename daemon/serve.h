// moepoold as a function: wires the components together (config → pool → I/O engine →
// expert cache → model registry → sessions → gRPC services → sockets) and serves until
// SIGTERM/SIGINT, so the production daemon (daemon/main.cpp) and test-only variants
// (tests/integration/helpers/moepoold_corrupt.cpp) share one body and differ only in hooks.
// Thread: the process's main thread, once.
#pragma once

#include <functional>
#include <memory>

#include "daemon/config.h"
#include "daemon/io_backend.h"

namespace CLI {
class App;
}

namespace moepool {

// Test seams of serve(). moepoold passes none; only test builds set them.
struct ServeHooks {
  // When set, wraps the I/O device the config picked (io_uring or pread) before the I/O
  // engine uses it, e.g. in a FaultyBackend (daemon/fault_backend.h).
  std::function<std::unique_ptr<IoBackend>(std::unique_ptr<IoBackend>)> wrap_io_device;
};

// Serves `cfg` until SIGTERM or SIGINT; returns the process exit status (0 after a clean
// stop, 1 when a component cannot start). SIGTERM and SIGINT must be blocked in every
// thread (serve_main does that before any thread starts).
int serve(const DaemonConfig& cfg, const ServeHooks& hooks);

// moepoold's main(): blocks the stop signals, adds the config flags (daemon/config_cli.h),
// --print-config and --version to `app` (which may carry flags of its own, parsed into
// variables `hooks` read when serve() calls them), parses argv, loads the config and
// serves it. Returns the exit status: 2 for bad flags or config.
int serve_main(CLI::App& app, int argc, char** argv, const ServeHooks& hooks);

}  // namespace moepool
