// gRPC Worker service (proto/moepool/v1/moepool.proto). Handlers check the caller and
// the arguments, then hand the work to the component that owns it (sessions, model
// registry, expert cache) and return; replies are finished from those components'
// callbacks. Opening a model parses GGUF headers, so it runs on the control thread,
// not on a gRPC thread.
// Thread safety: gRPC calls the handlers from its own threads.
#pragma once

#include "daemon/daemon_context.h"
#include "daemon/task_queue.h"
#include "moepool/v1/moepool.grpc.pb.h"

namespace moepool {

class WorkerService final : public v1::Worker::CallbackService {
 public:
  WorkerService(DaemonContext* ctx, TaskQueue* control) : ctx_(ctx), control_(control) {}

  grpc::ServerUnaryReactor* Attach(grpc::CallbackServerContext* call, const v1::AttachRequest* req,
                                   v1::AttachReply* reply) override;
  grpc::ServerBidiReactor<v1::SessionMessage, v1::SessionEvent>* Session(
      grpc::CallbackServerContext* call) override;
  grpc::ServerUnaryReactor* OpenModel(grpc::CallbackServerContext* call,
                                      const v1::OpenModelRequest* req,
                                      v1::OpenModelReply* reply) override;
  grpc::ServerUnaryReactor* Acquire(grpc::CallbackServerContext* call,
                                    const v1::AcquireRequest* req,
                                    v1::AcquireReply* reply) override;
  grpc::ServerUnaryReactor* Release(grpc::CallbackServerContext* call,
                                    const v1::ReleaseRequest* req,
                                    v1::ReleaseReply* reply) override;
  grpc::ServerUnaryReactor* Prefetch(grpc::CallbackServerContext* call,
                                     const v1::PrefetchRequest* req,
                                     v1::PrefetchReply* reply) override;

 private:
  DaemonContext* ctx_;
  TaskQueue* control_;
};

}  // namespace moepool
