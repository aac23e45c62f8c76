#include "daemon/worker_service.h"

#include <spdlog/spdlog.h>

#include "daemon/expert_cache.h"
#include "daemon/model_registry.h"
#include "daemon/pool.h"
#include "daemon/popularity_store.h"
#include "daemon/prefetcher.h"
#include "daemon/rpc_util.h"
#include "daemon/session_registry.h"
#include "daemon/warmup.h"

namespace moepool {
namespace {

constexpr int kMaxExpertsPerCall = 4096;

grpc::ServerUnaryReactor* finish(grpc::CallbackServerContext* call, const grpc::Status& st) {
  auto* reactor = call->DefaultReactor();
  reactor->Finish(st);
  return reactor;
}

v1::ProjectionKind to_proto(ProjKind k) {
  switch (k) {
    case ProjKind::kGate: return v1::PROJECTION_GATE;
    case ProjKind::kUp: return v1::PROJECTION_UP;
    case ProjKind::kDown: return v1::PROJECTION_DOWN;
    case ProjKind::kGateUp: return v1::PROJECTION_GATE_UP;
  }
  return v1::PROJECTION_UNSPECIFIED;
}

void fill_model_reply(const Model& m, v1::OpenModelReply* reply) {
  reply->set_model_id(m.id());
  reply->set_name(m.catalog.name());
  reply->set_architecture(m.catalog.architecture());
  reply->set_block_count(m.catalog.block_count());
  for (const MoeLayer& l : m.catalog.layers()) {
    auto* li = reply->add_layers();
    li->set_layer(l.layer);
    li->set_n_experts(l.n_experts);
    li->set_expert_bytes(l.expert_bytes);
    for (const ProjTensor& p : l.projections) {
      auto* pi = li->add_projections();
      pi->set_kind(to_proto(p.kind));
      pi->set_ggml_type(static_cast<uint32_t>(p.type));
      for (uint64_t n : p.ne) pi->add_ne(n);
      pi->set_expert_bytes(p.expert_bytes);
    }
  }
}

void fill_lease(const LeaseInfo& l, v1::Lease* out) {
  out->set_expert(l.expert);
  out->set_slot_id(l.slot_id);
  out->set_generation(l.generation);
  out->set_slot_class(l.slot_class);
  out->set_slot_index(l.slot_index);
  out->set_stride(l.stride);
  out->set_pool_offset(l.pool_offset);
  out->set_hit(l.hit);
  for (const ProjectionPlace& p : l.projections) {
    auto* pp = out->add_projections();
    pp->set_kind(to_proto(p.kind));
    pp->set_offset(p.offset);
    pp->set_bytes(p.bytes);
  }
}

// Checks the caller and its session; returns the session or an error.
Result<SessionInfo> session_of(DaemonContext* ctx, grpc::CallbackServerContext* call,
                               uint64_t session_id) {
  auto peer = caller_of(*ctx, call);
  if (!peer.ok()) return peer.status();
  return ctx->sessions->check(session_id, *peer);
}

// Validates the shape of an expert list before it reaches the cache.
Status check_experts(const google::protobuf::RepeatedField<uint32_t>& experts) {
  if (experts.empty()) return InvalidArgument("no experts named");
  if (experts.size() > kMaxExpertsPerCall)
    return InvalidArgument("too many experts in one call (" + std::to_string(experts.size()) +
                           ", at most " + std::to_string(kMaxExpertsPerCall) + ")");
  return Status::Ok();
}

// Whether `layer` is a MoE layer of `model` that has every one of `experts`.
bool valid_experts(const Model& model, uint32_t layer, const std::vector<uint32_t>& experts) {
  const MoeLayer* l = model.catalog.layer(layer);
  if (l == nullptr) return false;
  for (uint32_t e : experts)
    if (e >= l->n_experts) return false;
  return true;
}

// Checks PrefetchRequest.probabilities: empty, or one per expert, each in [0, 1].
Status check_probabilities(const v1::PrefetchRequest& req) {
  const auto& p = req.probabilities();
  if (p.empty()) return Status::Ok();
  if (p.size() != req.experts().size())
    return InvalidArgument("probabilities: " + std::to_string(p.size()) + " given for " +
                           std::to_string(req.experts().size()) +
                           " experts (one per expert, or none)");
  for (int i = 0; i < p.size(); ++i) {
    if (!(p[i] >= 0.0f && p[i] <= 1.0f))
      return InvalidArgument("probabilities[" + std::to_string(i) + "] = " +
                             std::to_string(p[i]) + " is outside [0, 1]");
  }
  return Status::Ok();
}

struct ExpertCall {
  SessionInfo session;
  std::shared_ptr<Model> model;
};

// The checks Acquire and Prefetch share: caller owns the session, the expert list has a
// sane size, the model is open.
Result<ExpertCall> check_expert_call(DaemonContext* ctx, grpc::CallbackServerContext* call,
                                     uint64_t session_id, uint64_t model_id,
                                     const google::protobuf::RepeatedField<uint32_t>& experts) {
  auto s = session_of(ctx, call, session_id);
  if (!s.ok()) return s.status();
  MOEPOOL_RETURN_IF_ERROR(check_experts(experts));
  auto model = ctx->models->find(model_id);
  if (!model) return NotFound("no open model with id " + model_id_hex(model_id));
  return ExpertCall{*s, std::move(model)};
}

// Binds a session to this stream; the session ends when the stream does.
class SessionReactor final : public grpc::ServerBidiReactor<v1::SessionMessage, v1::SessionEvent> {
 public:
  SessionReactor(DaemonContext* ctx, grpc::CallbackServerContext* call) : ctx_(ctx) {
    auto peer = caller_of(*ctx, call);
    if (!peer.ok()) {
      Finish(to_grpc(peer.status()));
      return;
    }
    peer_ = *peer;
    StartRead(&in_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // the worker closed its side or went away
      if (!finished_) {
        finished_ = true;
        Finish(grpc::Status::OK);
      }
      return;
    }
    if (session_ == 0) {
      if (!in_.has_hello()) return fail(InvalidArgument("the first session message must be a hello"));
      const auto& h = in_.hello();
      Status st = ctx_->sessions->bind(h.session_id(),
                                       reinterpret_cast<const uint8_t*>(h.token().data()),
                                       h.token().size(), peer_);
      if (!st.ok()) return fail(st);
      session_ = h.session_id();
      out_.mutable_welcome()->set_session_id(session_);
      StartWrite(&out_);
    }
    StartRead(&in_);  // later messages are ignored; the read notices the stream's end
  }
  void OnWriteDone(bool) override {}
  void OnDone() override {
    if (session_ != 0) ctx_->sessions->end(session_, "session stream closed");
    delete this;
  }

 private:
  void fail(const Status& st) {
    if (finished_) return;
    finished_ = true;
    Finish(to_grpc(st));
  }
  DaemonContext* ctx_;
  PeerCred peer_;
  uint64_t session_ = 0;
  bool finished_ = false;
  v1::SessionMessage in_;
  v1::SessionEvent out_;
};

}  // namespace

grpc::ServerUnaryReactor* WorkerService::Attach(grpc::CallbackServerContext* call,
                                                const v1::AttachRequest* req,
                                                v1::AttachReply* reply) {
  auto peer = caller_of(*ctx_, call);
  if (!peer.ok()) return finish(call, to_grpc(peer.status()));
  auto s = ctx_->sessions->create(*peer, req->client_name());
  if (!s.ok()) return finish(call, to_grpc(s.status()));
  reply->set_session_id(s->id);
  reply->set_token(std::string(s->token.begin(), s->token.end()));
  reply->set_fd_socket(ctx_->fd_socket);
  auto* layout = reply->mutable_layout();
  layout->set_layout_version(kLayoutVersion);
  layout->set_pool_bytes(ctx_->pool->pool_bytes());
  layout->set_segment_bytes(ctx_->pool->segment_bytes());
  layout->set_segment_count(ctx_->pool->segment_count());
  layout->set_control_bytes(ctx_->pool->control_bytes());
  layout->set_backend(ctx_->pool->backend());
  if (!ctx_->pool->device_uuid().empty()) layout->set_device_uuid(ctx_->pool->device_uuid());
  return finish(call, grpc::Status::OK);
}

grpc::ServerBidiReactor<v1::SessionMessage, v1::SessionEvent>* WorkerService::Session(
    grpc::CallbackServerContext* call) {
  return new SessionReactor(ctx_, call);
}

grpc::ServerUnaryReactor* WorkerService::OpenModel(grpc::CallbackServerContext* call,
                                                   const v1::OpenModelRequest* req,
                                                   v1::OpenModelReply* reply) {
  auto s = session_of(ctx_, call, req->session_id());
  if (!s.ok()) return finish(call, to_grpc(s.status()));
  auto* reactor = call->DefaultReactor();
  control_->post([ctx = ctx_, path = req->path(), session = s->id, reply, reactor] {
    auto model = ctx->models->open(path, session);
    if (!model.ok()) {
      spdlog::warn("session {}: open '{}' refused: {}", session, path, model.status().to_string());
      reactor->Finish(to_grpc(model.status()));
      return;
    }
    fill_model_reply(**model, reply);
    spdlog::info("session {} opened model '{}' ({} MoE layers, id {:016x})", session,
                 (*model)->catalog.name(), (*model)->catalog.layers().size(), (*model)->id());
    std::shared_ptr<Model> opened = *model;
    reactor->Finish(grpc::Status::OK);
    // After the reply: warm-up runs on its own thread (first open only).
    if (ctx->warmup) ctx->warmup->on_open(std::move(opened));
  });
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Acquire(grpc::CallbackServerContext* call,
                                                 const v1::AcquireRequest* req,
                                                 v1::AcquireReply* reply) {
  auto c = check_expert_call(ctx_, call, req->session_id(), req->model_id(), req->experts());
  if (!c.ok()) return finish(call, to_grpc(c.status()));
  if (req->release_first_size() > 0) {
    if (req->release_first_size() > kMaxExpertsPerCall)
      return finish(call, to_grpc(InvalidArgument("too many leases in release_first")));
    std::vector<LeaseRef> refs;
    for (const auto& r : req->release_first()) refs.push_back({r.slot_id(), r.generation()});
    Status st = ctx_->cache->release(c->session.id, refs);
    if (!st.ok()) return finish(call, to_grpc(Status(st.code(), "release_first: " + st.message())));
  }
  auto* reactor = call->DefaultReactor();
  // Copied first: the reply may be finished (and `req` freed) inside acquire().
  const uint32_t layer = req->layer();
  std::vector<uint32_t> experts(req->experts().begin(), req->experts().end());
  ctx_->cache->acquire(c->session.id, c->model, layer, experts,
                       [reply, reactor](Result<std::vector<LeaseInfo>> leases) {
                         if (!leases.ok()) return reactor->Finish(to_grpc(leases.status()));
                         for (const LeaseInfo& l : *leases) fill_lease(l, reply->add_leases());
                         reactor->Finish(grpc::Status::OK);
                       });
  // After the demand reads were started: count popularity, then predict the next layer.
  if (valid_experts(*c->model, layer, experts)) {
    if (ctx_->popularity)
      ctx_->popularity->count(c->model->id(), c->model->catalog.name(), layer, experts);
    if (ctx_->prefetcher) ctx_->prefetcher->on_acquire(c->session.id, c->model, layer, experts);
  }
  return reactor;
}

grpc::ServerUnaryReactor* WorkerService::Release(grpc::CallbackServerContext* call,
                                                 const v1::ReleaseRequest* req,
                                                 v1::ReleaseReply*) {
  auto s = session_of(ctx_, call, req->session_id());
  if (!s.ok()) return finish(call, to_grpc(s.status()));
  if (req->leases_size() > kMaxExpertsPerCall)
    return finish(call, to_grpc(InvalidArgument("too many leases in one call")));
  std::vector<LeaseRef> refs;
  for (const auto& r : req->leases()) refs.push_back({r.slot_id(), r.generation()});
  return finish(call, to_grpc(ctx_->cache->release(s->id, refs)));
}

grpc::ServerUnaryReactor* WorkerService::Prefetch(grpc::CallbackServerContext* call,
                                                  const v1::PrefetchRequest* req,
                                                  v1::PrefetchReply* reply) {
  auto c = check_expert_call(ctx_, call, req->session_id(), req->model_id(), req->experts());
  if (!c.ok()) return finish(call, to_grpc(c.status()));
  if (Status st = check_probabilities(*req); !st.ok()) return finish(call, to_grpc(st));
  auto queued = ctx_->cache->prefetch(
      c->model, req->layer(), std::vector<uint32_t>(req->experts().begin(), req->experts().end()),
      std::vector<double>(req->probabilities().begin(), req->probabilities().end()),
      PrefetchSource::kHint);
  if (!queued.ok()) return finish(call, to_grpc(queued.status()));
  reply->set_queued(*queued);
  return finish(call, grpc::Status::OK);
}

}  // namespace moepool
