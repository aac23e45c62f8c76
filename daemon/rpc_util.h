// Small helpers shared by the gRPC services: status conversion and caller identity.
#pragma once

#include <grpcpp/grpcpp.h>

#include <optional>

#include "common/status.h"
#include "daemon/daemon_context.h"
#include "daemon/session_registry.h"

namespace moepool {

// Maps a moepool Status to the gRPC status code that says what went wrong.
grpc::Status to_grpc(const Status& st);
// The credentials of the process that made this call, or an error status to return.
Result<PeerCred> caller_of(const DaemonContext& ctx, grpc::CallbackServerContext* call);
// Returns true iff `peer` may call admin RPCs (root, the daemon's uid, admin.uids,
// admin.groups).
bool is_admin(const DaemonContext& ctx, const PeerCred& peer);
// A model id as logs and moepoolctl print it: 16 hex digits.
std::string model_id_hex(uint64_t id);

}  // namespace moepool
