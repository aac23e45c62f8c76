#include "rpc_convert.h"

#include <string>

namespace moepool::rpc {
namespace {

// Returns true iff a + b does not overflow, storing the sum in *sum.
bool add_ok(uint64_t a, uint64_t b, uint64_t* sum) { return !__builtin_add_overflow(a, b, sum); }

Code to_code(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return Code::kOk;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return Code::kInvalidArgument;
    case grpc::StatusCode::NOT_FOUND:
      return Code::kNotFound;
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
      return Code::kPermissionDenied;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return Code::kResourceExhausted;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return Code::kFailedPrecondition;
    case grpc::StatusCode::ALREADY_EXISTS:
      return Code::kAlreadyExists;
    // The call did not complete: retrying may succeed.
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::DEADLINE_EXCEEDED:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::ABORTED:
      return Code::kUnavailable;
    default:
      return Code::kInternal;
  }
}

const char* grpc_code_name(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::OK:
      return "OK";
    case grpc::StatusCode::CANCELLED:
      return "CANCELLED";
    case grpc::StatusCode::UNKNOWN:
      return "UNKNOWN";
    case grpc::StatusCode::INVALID_ARGUMENT:
      return "INVALID_ARGUMENT";
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return "DEADLINE_EXCEEDED";
    case grpc::StatusCode::NOT_FOUND:
      return "NOT_FOUND";
    case grpc::StatusCode::ALREADY_EXISTS:
      return "ALREADY_EXISTS";
    case grpc::StatusCode::PERMISSION_DENIED:
      return "PERMISSION_DENIED";
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "RESOURCE_EXHAUSTED";
    case grpc::StatusCode::FAILED_PRECONDITION:
      return "FAILED_PRECONDITION";
    case grpc::StatusCode::ABORTED:
      return "ABORTED";
    case grpc::StatusCode::OUT_OF_RANGE:
      return "OUT_OF_RANGE";
    case grpc::StatusCode::UNIMPLEMENTED:
      return "UNIMPLEMENTED";
    case grpc::StatusCode::INTERNAL:
      return "INTERNAL";
    case grpc::StatusCode::UNAVAILABLE:
      return "UNAVAILABLE";
    case grpc::StatusCode::DATA_LOSS:
      return "DATA_LOSS";
    case grpc::StatusCode::UNAUTHENTICATED:
      return "UNAUTHENTICATED";
    default:
      return "gRPC error";
  }
}

Status outside_pool(const v1::Lease& l, const std::string& what) {
  return Internal("daemon sent a lease outside the pool: expert " + std::to_string(l.expert()) +
                  ", slot " + std::to_string(l.slot_id()) + ": " + what);
}

}  // namespace

Status from_grpc(const grpc::Status& st, std::string_view rpc) {
  if (st.ok()) return Status::Ok();
  std::string msg(rpc);
  msg += ": ";
  msg += st.error_message().empty() ? grpc_code_name(st.error_code()) : st.error_message();
  return {to_code(st.error_code()), std::move(msg)};
}

Result<Projection> to_projection(v1::ProjectionKind kind) {
  switch (kind) {
    case v1::PROJECTION_GATE:
      return Projection::kGate;
    case v1::PROJECTION_UP:
      return Projection::kUp;
    case v1::PROJECTION_DOWN:
      return Projection::kDown;
    case v1::PROJECTION_GATE_UP:
      return Projection::kGateUp;
    default:
      return Internal("daemon sent an unknown projection kind " +
                      std::to_string(static_cast<int>(kind)));
  }
}

Result<ModelInfo> to_model_info(const v1::OpenModelReply& reply) {
  ModelInfo info;
  info.id = reply.model_id();
  info.name = reply.name();
  info.architecture = reply.architecture();
  info.block_count = reply.block_count();
  info.layers.reserve(reply.layers_size());
  for (const v1::LayerInfo& l : reply.layers()) {
    LayerShape shape{l.layer(), l.n_experts(), l.expert_bytes(), {}};
    for (const v1::ProjectionInfo& p : l.projections()) {
      auto kind = to_projection(p.kind());
      if (!kind.ok()) return kind.status();
      shape.projections.push_back({*kind, p.ggml_type(),
                                   std::vector<uint64_t>(p.ne().begin(), p.ne().end()),
                                   p.expert_bytes()});
    }
    info.layers.push_back(std::move(shape));
  }
  return info;
}

PoolStats to_pool_stats(const v1::StatsReply& r) {
  PoolStats s;
  s.pool_bytes = r.pool_bytes();
  s.used_bytes = r.used_bytes();
  s.pinned_bytes = r.pinned_bytes();
  s.hits = r.hits();
  s.misses = r.misses();
  s.bytes_read = r.bytes_read();
  s.reads = r.reads();
  s.read_errors = r.read_errors();
  s.evictions = r.evictions();
  s.prefetches = r.prefetches();
  s.sessions = r.sessions();
  s.pool_backend = r.pool_backend().empty() ? "host" : r.pool_backend();
  s.upload_bytes = r.upload_bytes();
  s.upload_busy_ns = r.upload_busy_ns();
  s.upload_copies = r.upload_copies();
  s.staging_waits = r.staging_waits();
  for (const v1::ModelStats& m : r.models()) {
    ModelStats ms;
    ms.model_id = m.model_id();
    ms.name = m.name();
    ms.resident_experts = m.resident_experts();
    ms.used_bytes = m.used_bytes();
    ms.pinned_bytes = m.pinned_bytes();
    ms.hits = m.hits();
    ms.misses = m.misses();
    ms.bytes_read = m.bytes_read();
    ms.read_errors = m.read_errors();
    ms.evictions = m.evictions();
    ms.prefetches = m.prefetches();
    ms.predicted_prefetches = m.predicted_prefetches();
    ms.weight = m.weight();
    ms.min_bytes = m.min_bytes();
    ms.max_bytes = m.max_bytes();
    ms.share_bytes = m.share_bytes();
    ms.active = m.active();
    ms.warmup_state = m.warmup_state();
    ms.warmup_planned_experts = m.warmup_planned_experts();
    ms.warmup_loaded_experts = m.warmup_loaded_experts();
    ms.warmup_bytes_read = m.warmup_bytes_read();
    s.models.push_back(std::move(ms));
  }
  return s;
}

Result<Lease> to_lease(const v1::Lease& l, const uint8_t* pool_base, uint64_t pool_bytes) {
  uint64_t slot_end = 0;
  if (l.stride() == 0) return outside_pool(l, "stride is 0");
  if (!add_ok(l.pool_offset(), l.stride(), &slot_end) || slot_end > pool_bytes) {
    return outside_pool(l, "pool offset " + std::to_string(l.pool_offset()) + " + stride " +
                               std::to_string(l.stride()) + " exceeds the pool's " +
                               std::to_string(pool_bytes) + " bytes");
  }
  // Engines address slot k as base + k * stride: the two must agree.
  uint64_t k_offset = 0;
  if (__builtin_mul_overflow(l.slot_index(), l.stride(), &k_offset) ||
      k_offset != l.pool_offset()) {
    return outside_pool(l, "slot index " + std::to_string(l.slot_index()) + " * stride " +
                               std::to_string(l.stride()) + " != pool offset " +
                               std::to_string(l.pool_offset()));
  }
  Lease out;
  out.expert = l.expert();
  out.slot_id = l.slot_id();
  out.generation = l.generation();
  out.slot_class = l.slot_class();
  out.slot_index = l.slot_index();
  out.stride = l.stride();
  // A VRAM pool is not mapped here (pool_base null): no pointers, only offsets.
  out.slot = pool_base ? pool_base + l.pool_offset() : nullptr;
  out.hit = l.hit();
  out.projections.reserve(l.projections_size());
  for (const v1::ProjectionPlace& p : l.projections()) {
    uint64_t end = 0;
    if (!add_ok(p.offset(), p.bytes(), &end) || end > l.stride()) {
      return outside_pool(l, "projection at offset " + std::to_string(p.offset()) + " with " +
                                 std::to_string(p.bytes()) + " bytes exceeds the stride " +
                                 std::to_string(l.stride()));
    }
    auto kind = to_projection(p.kind());
    if (!kind.ok()) return kind.status();
    out.projections.push_back(
        {*kind, out.slot ? out.slot + p.offset() : nullptr, p.bytes(), p.offset()});
  }
  return out;
}

}  // namespace moepool::rpc
