#include "daemon/admin_service.h"

#include <unistd.h>

#include <spdlog/spdlog.h>

#include "common/version.h"
#include "daemon/config.h"
#include "daemon/expert_cache.h"
#include "daemon/io_engine.h"
#include "daemon/model_registry.h"
#include "daemon/pool.h"
#include "daemon/rpc_util.h"
#include "daemon/session_registry.h"

namespace moepool {
namespace {

void fill_class(const IoEngine::ClassStats& c, v1::IoClassStats* out) {
  out->set_requests(c.requests);
  out->set_reads(c.reads);
  out->set_bytes(c.bytes);
  out->set_errors(c.errors);
  out->set_cancelled(c.cancelled);
  out->set_latency_p50_us(c.latency_p50_us);
  out->set_latency_p99_us(c.latency_p99_us);
}

// StatsReply.io: the I/O engine's counters and the path it uses.
void fill_io(const IoEngine& io, uint64_t prefetch_cap, v1::IoStats* out) {
  IoEngine::Stats s = io.stats();
  out->set_mode(io.mode_name());
  out->set_queue_depth(s.queue_depth);
  out->set_in_flight(s.in_flight);
  out->set_in_flight_peak(s.in_flight_peak);
  fill_class(s.demand, out->mutable_demand());
  fill_class(s.prefetch, out->mutable_prefetch());
  out->set_retries(s.retries);
  out->set_short_reads(s.short_reads);
  out->set_merged_spans(s.merged_spans);
  out->set_fixed_buffers(s.fixed_buffers);
  out->set_fixed_files(s.fixed_files);
  out->set_prefetch_bytes_cap(prefetch_cap);
}

grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* call, const grpc::Status& st) {
  auto* reactor = call->DefaultReactor();
  reactor->Finish(st);
  return reactor;
}

}  // namespace

grpc::ServerUnaryReactor* AdminService::Status(grpc::CallbackServerContext* call,
                                               const v1::StatusRequest*, v1::StatusReply* reply) {
  auto peer = caller_of(*ctx_, call);
  if (!peer.ok()) return finish(call, to_grpc(peer.status()));
  CacheStats st = ctx_->cache->stats();
  reply->set_version(version());
  reply->set_uptime_seconds(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(
      std::chrono::steady_clock::now() - ctx_->started).count()));
  reply->set_io_mode(ctx_->io->mode_name());
  reply->set_pool_bytes(st.pool_bytes);
  reply->set_used_bytes(st.used_bytes);
  reply->set_sessions(static_cast<uint32_t>(ctx_->sessions->count()));
  reply->set_models(static_cast<uint32_t>(ctx_->models->list().size()));
  reply->set_locked(ctx_->pool->locked());
  reply->set_pid(static_cast<uint32_t>(getpid()));
  reply->set_pool_backend(st.backend);
  return finish(call, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::ListModels(grpc::CallbackServerContext* call,
                                                   const v1::ListModelsRequest*,
                                                   v1::ListModelsReply* reply) {
  auto peer = caller_of(*ctx_, call);
  if (!peer.ok()) return finish(call, to_grpc(peer.status()));
  for (const auto& m : ctx_->models->list()) {
    auto* s = reply->add_models();
    s->set_model_id(m->id());
    s->set_name(m->catalog.name());
    s->set_path(m->path);
    s->set_architecture(m->catalog.architecture());
    s->set_moe_layers(static_cast<uint32_t>(m->catalog.layers().size()));
    uint32_t experts = 0;
    uint64_t bytes = 0;
    for (const MoeLayer& l : m->catalog.layers()) {
      experts = std::max(experts, l.n_experts);
      bytes = std::max(bytes, l.expert_bytes);
    }
    s->set_n_experts(experts);
    s->set_expert_bytes(bytes);
    s->set_file_bytes(m->catalog.total_bytes());
    uint32_t open = 0;
    for (uint64_t session : ctx_->models->openers(m->id())) open += ctx_->sessions->alive(session);
    s->set_open_sessions(open);
  }
  return finish(call, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::Stats(grpc::CallbackServerContext* call,
                                              const v1::StatsRequest*, v1::StatsReply* reply) {
  auto peer = caller_of(*ctx_, call);
  if (!peer.ok()) return finish(call, to_grpc(peer.status()));
  CacheStats st = ctx_->cache->stats();
  reply->set_pool_bytes(st.pool_bytes);
  reply->set_used_bytes(st.used_bytes);
  reply->set_pinned_bytes(st.pinned_bytes);
  reply->set_hits(st.hits);
  reply->set_misses(st.misses);
  reply->set_bytes_read(st.bytes_read);
  reply->set_reads(st.reads);
  reply->set_read_errors(st.read_errors);
  reply->set_evictions(st.evictions);
  reply->set_prefetches(st.prefetches);
  reply->set_sessions(static_cast<uint32_t>(ctx_->sessions->count()));
  for (const auto& m : ctx_->models->list()) {
    ModelCounters c = ctx_->cache->model_counters(*m);
    auto* ms = reply->add_models();
    ms->set_model_id(m->id());
    ms->set_name(m->catalog.name());
    ms->set_resident_experts(c.resident);
    ms->set_used_bytes(c.used_bytes);
    ms->set_pinned_bytes(c.pinned_bytes);
    ms->set_hits(c.hits);
    ms->set_misses(c.misses);
    ms->set_bytes_read(c.bytes_read);
    ms->set_read_errors(c.read_errors);
    ms->set_evictions(c.evictions);
    ms->set_prefetches(c.prefetches);
    ms->set_predicted_prefetches(c.predicted_prefetches);
    QuotaView q = ctx_->cache->quota_of(*m);
    ms->set_weight(q.quota.weight);
    ms->set_min_bytes(q.quota.min_bytes);
    ms->set_max_bytes(q.quota.max_bytes);
    ms->set_share_bytes(q.share_bytes);
    ms->set_active(q.active);
    ms->set_warmup_state(c.warmup_state);
    ms->set_warmup_planned_experts(c.warmup_planned);
    ms->set_warmup_loaded_experts(c.warmup_loaded);
    ms->set_warmup_bytes_read(c.warmup_bytes_read);
  }
  for (const SlotClassView& v : ctx_->cache->class_stats()) {
    auto* cs = reply->add_classes();
    cs->set_stride(v.stride);
    cs->set_segments(v.segments);
    cs->set_slots_used(v.slots_used);
    cs->set_ghost_hits(v.ghost_hits);
    cs->set_segments_in(v.segments_in);
    cs->set_segments_out(v.segments_out);
  }
  reply->set_segment_moves(ctx_->cache->segment_moves());
  reply->set_pool_backend(st.backend);
  reply->set_upload_bytes(st.upload.bytes);
  reply->set_upload_busy_ns(st.upload.busy_ns);
  reply->set_upload_copies(st.upload.copies);
  reply->set_upload_batches(st.upload.batches);
  reply->set_staging_waits(st.upload.staging_waits);
  fill_io(*ctx_->io, effective_prefetch_bytes(ctx_->config), reply->mutable_io());
  return finish(call, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::EvictModel(grpc::CallbackServerContext* call,
                                                   const v1::EvictModelRequest* req,
                                                   v1::EvictModelReply* reply) {
  auto peer = caller_of(*ctx_, call);
  if (!peer.ok()) return finish(call, to_grpc(peer.status()));
  if (!is_admin(*ctx_, *peer))
    return finish(call, to_grpc(PermissionDenied("evicting a model needs an admin (uid " +
                                                 std::to_string(peer->uid) + " is not one)")));
  if (!ctx_->models->find(req->model_id()))
    return finish(call, to_grpc(NotFound("no open model with id " + model_id_hex(req->model_id()))));
  auto [evicted, pinned] = ctx_->cache->evict_model(req->model_id());
  spdlog::info("uid {} evicted model {:016x}: {} experts dropped, {} pinned kept", peer->uid,
               req->model_id(), evicted, pinned);
  reply->set_evicted(evicted);
  reply->set_still_pinned(pinned);
  return finish(call, grpc::Status::OK);
}

grpc::ServerUnaryReactor* AdminService::SetQuota(grpc::CallbackServerContext* call,
                                                 const v1::SetQuotaRequest* req,
                                                 v1::SetQuotaReply* reply) {
  auto peer = caller_of(*ctx_, call);
  if (!peer.ok()) return finish(call, to_grpc(peer.status()));
  if (!is_admin(*ctx_, *peer))
    return finish(call, to_grpc(PermissionDenied("setting a quota needs an admin (uid " +
                                                 std::to_string(peer->uid) + " is not one)")));
  if (req->model().empty())
    return finish(call, to_grpc(InvalidArgument("model: empty name (use the name `moepoolctl "
                                                "stats` shows)")));
  if (req->model().size() > 1024)
    return finish(call, to_grpc(InvalidArgument("model: name longer than 1024 bytes")));
  std::lock_guard<std::mutex> lock(ctx_->quota_mu);
  auto it = ctx_->quotas.find(req->model());
  Quota q = it == ctx_->quotas.end() ? Quota{} : it->second;
  if (req->has_weight()) q.weight = req->weight();
  if (req->has_min_bytes()) q.min_bytes = req->min_bytes();
  if (req->has_max_bytes()) q.max_bytes = req->max_bytes();
  if (req->has_weight() || req->has_min_bytes() || req->has_max_bytes()) {
    // The budget checks weight > 0, max >= min and the minimums against the pool, and
    // changes nothing when it refuses.
    if (moepool::Status st = ctx_->cache->set_quota(req->model(), q); !st.ok())
      return finish(call, to_grpc(st));
    ctx_->quotas[req->model()] = q;
    spdlog::info("uid {} set the quota of model '{}': weight {}, min {} B, max {} B", peer->uid,
                 req->model(), q.weight, q.min_bytes, q.max_bytes);
  }
  reply->set_weight(q.weight);
  reply->set_min_bytes(q.min_bytes);
  reply->set_max_bytes(q.max_bytes);
  return finish(call, grpc::Status::OK);
}

}  // namespace moepool
