// moepoolctl's connection to moepoold: a gRPC channel to the Admin service on the daemon's
// Unix socket (no session, no pool mapping), and the default socket path.
// Thread safety: main thread only.
#pragma once

#include <grpcpp/grpcpp.h>

#include <memory>
#include <string>

#include "moepool/status.h"
#include "moepool/v1/moepool.grpc.pb.h"

namespace moepool::ctl {

// The daemon's default socket: $XDG_RUNTIME_DIR/moepool/moepool.sock when XDG_RUNTIME_DIR
// is an absolute path, else /tmp/moepool-<uid>/moepool.sock (as moepoold's default).
std::string default_socket_path();

class AdminChannel {
 public:
  // Connects to `socket_path`, failing within about 5 s with "cannot reach moepoold at
  // <path>: <reason>".
  static Result<std::unique_ptr<AdminChannel>> connect(const std::string& socket_path);

  v1::Admin::Stub* stub() { return stub_.get(); }
  // A context with the admin call deadline set.
  std::unique_ptr<grpc::ClientContext> context() const;
  // Turns a failed call into a Status: "<rpc>: <daemon's message>", or "cannot reach
  // moepoold at <path>: ..." when the daemon went away.
  Status error(const grpc::Status& st, const char* rpc) const;

 private:
  std::string path_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Admin::Stub> stub_;
};

}  // namespace moepool::ctl
