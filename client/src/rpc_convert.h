// Conversions between the wire contract (moepool.v1 messages, gRPC status) and the
// public C++ API structs of moepool/client.h. Replies from the daemon are checked here:
// a lease that points outside the pool is an error, never a pointer.
// Thread safety: pure functions, any thread.
#pragma once

#include <grpcpp/support/status.h>

#include <string_view>

#include "moepool/client.h"
#include "moepool/v1/moepool.pb.h"

namespace moepool::rpc {

// Returns the moepool Status for a failed gRPC call `rpc`, keeping the daemon's message:
// "<rpc>: <message>". OK maps to Status::Ok().
Status from_grpc(const grpc::Status& st, std::string_view rpc);

// Returns the API projection kind for a wire kind, or kInternal for an unknown one.
Result<Projection> to_projection(v1::ProjectionKind kind);

Result<ModelInfo> to_model_info(const v1::OpenModelReply& reply);
PoolStats to_pool_stats(const v1::StatsReply& reply);

// Checks `lease` against the pool mapped at `pool_base` (pool_bytes long) and returns it
// with pointers into the pool: slot = pool_base + pool_offset, each projection's data =
// slot + offset. A lease outside the pool or a projection outside its slot is kInternal
// ("daemon sent a lease outside the pool").
Result<Lease> to_lease(const v1::Lease& lease, const uint8_t* pool_base, uint64_t pool_bytes);

}  // namespace moepool::rpc
