#include "daemon/rpc_util.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

#include "daemon/listener.h"

namespace moepool {

grpc::Status to_grpc(const Status& st) {
  grpc::StatusCode code = grpc::StatusCode::UNKNOWN;
  switch (st.code()) {
    case Code::kOk: return grpc::Status::OK;
    case Code::kInvalidArgument: code = grpc::StatusCode::INVALID_ARGUMENT; break;
    case Code::kNotFound: code = grpc::StatusCode::NOT_FOUND; break;
    case Code::kPermissionDenied: code = grpc::StatusCode::PERMISSION_DENIED; break;
    case Code::kResourceExhausted: code = grpc::StatusCode::RESOURCE_EXHAUSTED; break;
    case Code::kUnavailable: code = grpc::StatusCode::UNAVAILABLE; break;
    case Code::kFailedPrecondition: code = grpc::StatusCode::FAILED_PRECONDITION; break;
    case Code::kAlreadyExists: code = grpc::StatusCode::ALREADY_EXISTS; break;
    case Code::kInternal: code = grpc::StatusCode::INTERNAL; break;
  }
  return grpc::Status(code, st.message());
}

Result<PeerCred> caller_of(const DaemonContext& ctx, grpc::CallbackServerContext* call) {
  auto peer = ctx.listener->peer_of(call->peer());
  if (!peer) return PermissionDenied("unknown connection '" + call->peer() + "'");
  return *peer;
}

bool is_admin(const DaemonContext& ctx, const PeerCred& peer) {
  if (peer.uid == 0 || peer.uid == geteuid()) return true;
  const auto& uids = ctx.config.admin_uids;
  if (std::find(uids.begin(), uids.end(), peer.uid) != uids.end()) return true;
  return std::find(ctx.admin_gids.begin(), ctx.admin_gids.end(), peer.gid) != ctx.admin_gids.end();
}

std::string model_id_hex(uint64_t id) {
  char buf[17];
  snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

}  // namespace moepool
