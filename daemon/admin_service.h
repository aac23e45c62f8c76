// gRPC Admin service: status, models, stats (anyone who can reach the socket) and
// evict-model and set-quota (admins only: root, the daemon's uid, admin.uids,
// admin.groups).
// Thread safety: gRPC calls the handlers from its own threads.
#pragma once

#include "daemon/daemon_context.h"
#include "moepool/v1/moepool.grpc.pb.h"

namespace moepool {

class AdminService final : public v1::Admin::CallbackService {
 public:
  explicit AdminService(DaemonContext* ctx) : ctx_(ctx) {}

  grpc::ServerUnaryReactor* Status(grpc::CallbackServerContext* call, const v1::StatusRequest* req,
                                   v1::StatusReply* reply) override;
  grpc::ServerUnaryReactor* ListModels(grpc::CallbackServerContext* call,
                                       const v1::ListModelsRequest* req,
                                       v1::ListModelsReply* reply) override;
  grpc::ServerUnaryReactor* Stats(grpc::CallbackServerContext* call, const v1::StatsRequest* req,
                                  v1::StatsReply* reply) override;
  grpc::ServerUnaryReactor* EvictModel(grpc::CallbackServerContext* call,
                                       const v1::EvictModelRequest* req,
                                       v1::EvictModelReply* reply) override;
  grpc::ServerUnaryReactor* SetQuota(grpc::CallbackServerContext* call,
                                     const v1::SetQuotaRequest* req,
                                     v1::SetQuotaReply* reply) override;

 private:
  DaemonContext* ctx_;
};

}  // namespace moepool
