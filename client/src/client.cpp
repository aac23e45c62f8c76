// libmoepool's Client (contract: moepool/client.h): attach, session stream, fd side
// channel, pool mapping, then one gRPC call per operation.
// Thread safety: every public method may be called from several threads at once; the
// members are set once in connect() and only read afterwards (the stubs and the session
// stream are thread-safe).
#include "moepool/client.h"

#include "common/daemon_socket.h"

#include <grpcpp/grpcpp.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <utility>
#include <cstring>
#include <exception>
#include <filesystem>

#include "moepool/v1/moepool.grpc.pb.h"
#include "pool_mapping.h"
#include "rpc_convert.h"
#include "segment_fds.h"
#include "session_stream.h"

namespace moepool {
namespace {

// Every step of connecting must answer within this, so a missing or wedged daemon is
// reported promptly instead of hanging the worker.
constexpr auto kConnectTimeout = std::chrono::seconds(5);
// Admin calls are cheap for the daemon; a reply this late means it is wedged.
constexpr auto kAdminTimeout = std::chrono::seconds(30);

grpc::ClientContext* with_deadline(grpc::ClientContext* ctx, std::chrono::seconds timeout) {
  ctx->set_deadline(std::chrono::system_clock::now() + timeout);
  return ctx;
}

// Runs `fn`, turning any exception (allocation failure, std::system_error) into kInternal:
// nothing throws out of libmoepool.
template <typename Fn>
auto guarded(const char* what, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const std::exception& e) {
    return Internal(std::string(what) + ": " + e.what());
  } catch (...) {
    return Internal(std::string(what) + ": unknown exception");
  }
}

}  // namespace

class Client::Impl {
 public:
  static Result<std::unique_ptr<Impl>> connect(const std::string& socket_path,
                                               const std::string& client_name);

  Result<ModelInfo> open_model(const std::string& path);
  Result<std::vector<Lease>> acquire(uint64_t model_id, uint32_t layer,
                                     std::span<const uint32_t> experts,
                                     std::span<const Lease> release_first);
  Status release(std::span<const Lease> leases);
  Status release_async(std::vector<Lease> leases);
  ~Impl();
  Result<uint32_t> prefetch(uint64_t model_id, uint32_t layer, std::span<const uint32_t> experts,
                            std::span<const float> probabilities);
  Result<PoolStats> stats();

  uint64_t session_id() const { return session_id_; }
  const uint8_t* pool_base() const { return pool_->base(); }
  uint64_t pool_bytes() const { return pool_->pool_bytes(); }
  const PoolMapping& pool() const { return *pool_; }

 private:
  // Releases every lease of `reply` (best effort), after acquire() found one unusable.
  void release_reply(const v1::AcquireReply& reply);
  // The Status of a failed call `rpc`; says "cannot reach moepoold" when the connection,
  // not the daemon, failed it.
  Status call_error(const grpc::Status& st, const char* rpc) const;

  std::string socket_path_;
  std::shared_ptr<grpc::Channel> channel_;
  std::unique_ptr<v1::Worker::Stub> worker_;
  std::unique_ptr<v1::Admin::Stub> admin_;
  uint64_t session_id_ = 0;
  std::unique_ptr<PoolMapping> pool_;
  // release_async() calls in flight (guarded by async_mu_; async_cv_ pairs with it) and
  // the first error one of them met, handed to the next release_async().
  std::mutex async_mu_;
  std::condition_variable async_cv_;
  int async_in_flight_ = 0;
  Status async_error_;
  // Declared last, destroyed first: the session ends before the pool is unmapped.
  std::unique_ptr<SessionStream> session_;
};

Result<std::unique_ptr<Client::Impl>> Client::Impl::connect(const std::string& socket_path,
                                                            const std::string& client_name) {
  MOEPOOL_RETURN_IF_ERROR(probe_daemon_socket(socket_path));
  auto impl = std::make_unique<Impl>();
  impl->socket_path_ = socket_path;
  grpc::ChannelArguments args;
  args.SetMaxReceiveMessageSize(64 << 20);  // OpenModel replies of very deep models
  impl->channel_ =
      grpc::CreateCustomChannel("unix:" + socket_path, grpc::InsecureChannelCredentials(), args);
  if (!impl->channel_->WaitForConnected(std::chrono::system_clock::now() + kConnectTimeout)) {
    return daemon_unreachable(socket_path,
                       "the socket accepts connections but gRPC did not connect within " +
                           std::to_string(kConnectTimeout.count()) + " s (is it moepoold?)",
                       Code::kUnavailable);
  }
  impl->worker_ = v1::Worker::NewStub(impl->channel_);
  impl->admin_ = v1::Admin::NewStub(impl->channel_);

  v1::AttachRequest req;
  req.set_client_name(client_name);
  v1::AttachReply reply;
  grpc::ClientContext ctx;
  grpc::Status gs = impl->worker_->Attach(with_deadline(&ctx, kConnectTimeout), req, &reply);
  if (!gs.ok()) {
    Status st = rpc::from_grpc(gs, "Attach");
    if (gs.error_code() == grpc::StatusCode::UNAVAILABLE ||
        gs.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED) {
      return daemon_unreachable(socket_path, st.message(), st.code());
    }
    return st;
  }
  impl->session_id_ = reply.session_id();

  auto session =
      SessionStream::open(impl->worker_.get(), reply.session_id(), reply.token(),
                          std::chrono::duration_cast<std::chrono::milliseconds>(kConnectTimeout));
  if (!session.ok()) return session.status();
  impl->session_ = std::move(session).value();

  auto fds =
      fetch_segment_fds(reply.fd_socket(), reply.session_id(), reply.token(),
                        static_cast<int>(std::chrono::milliseconds(kConnectTimeout).count()));
  if (!fds.ok()) return fds.status();
  const v1::PoolLayout& l = reply.layout();
  PoolGeometry geometry{l.layout_version(), l.pool_bytes(), l.segment_bytes(), l.segment_count(),
                        l.control_bytes(), l.backend(), l.device_uuid()};
  auto pool = PoolMapping::map(geometry, fds->fds());
  if (!pool.ok()) return pool.status();
  impl->pool_ = std::move(pool).value();
  return impl;  // the fds close here; the mappings stay
}

Status Client::Impl::call_error(const grpc::Status& st, const char* rpc) const {
  Status out = rpc::from_grpc(st, rpc);
  if (st.error_code() == grpc::StatusCode::UNAVAILABLE &&
      channel_->GetState(false) != GRPC_CHANNEL_READY) {
    return Unavailable(std::string(rpc) + ": cannot reach moepoold at " + socket_path_ + ": " +
                       st.error_message());
  }
  return out;
}

Result<ModelInfo> Client::Impl::open_model(const std::string& path) {
  MOEPOOL_RETURN_IF_ERROR(session_->health());
  v1::OpenModelRequest req;
  req.set_session_id(session_id_);
  // A relative path means relative to this process, which the daemon cannot know.
  std::error_code ec;
  std::filesystem::path abs = std::filesystem::absolute(path, ec);
  req.set_path(ec || path.empty() ? path : abs.string());
  v1::OpenModelReply reply;
  grpc::ClientContext ctx;
  grpc::Status gs = worker_->OpenModel(&ctx, req, &reply);
  if (!gs.ok()) return call_error(gs, "OpenModel");
  return rpc::to_model_info(reply);
}

void Client::Impl::release_reply(const v1::AcquireReply& reply) {
  v1::ReleaseRequest req;
  req.set_session_id(session_id_);
  for (const v1::Lease& l : reply.leases()) {
    auto* ref = req.add_leases();
    ref->set_slot_id(l.slot_id());
    ref->set_generation(l.generation());
  }
  if (req.leases_size() == 0) return;
  v1::ReleaseReply unused;
  grpc::ClientContext ctx;
  (void)worker_->Release(&ctx, req, &unused);
}

Result<std::vector<Lease>> Client::Impl::acquire(uint64_t model_id, uint32_t layer,
                                                 std::span<const uint32_t> experts,
                                                 std::span<const Lease> release_first) {
  if (experts.empty()) {
    MOEPOOL_RETURN_IF_ERROR(release(release_first));
    return std::vector<Lease>{};
  }
  MOEPOOL_RETURN_IF_ERROR(session_->health());
  v1::AcquireRequest req;
  req.set_session_id(session_id_);
  req.set_model_id(model_id);
  req.set_layer(layer);
  req.mutable_experts()->Add(experts.begin(), experts.end());
  for (const Lease& l : release_first) {
    auto* ref = req.add_release_first();
    ref->set_slot_id(l.slot_id);
    ref->set_generation(l.generation);
  }
  v1::AcquireReply reply;
  grpc::ClientContext ctx;  // no deadline: a read from disk may take a while
  grpc::Status gs = worker_->Acquire(&ctx, req, &reply);
  if (!gs.ok()) return call_error(gs, "Acquire");

  if (static_cast<size_t>(reply.leases_size()) != experts.size()) {
    release_reply(reply);
    return Internal("Acquire: moepoold returned " + std::to_string(reply.leases_size()) +
                    " leases for " + std::to_string(experts.size()) + " experts");
  }
  std::vector<Lease> leases;
  leases.reserve(experts.size());
  for (int i = 0; i < reply.leases_size(); ++i) {
    const v1::Lease& l = reply.leases(i);
    Status bad;
    if (l.expert() != experts[i]) {
      bad = Internal("Acquire: lease " + std::to_string(i) + " is for expert " +
                     std::to_string(l.expert()) + ", asked for " + std::to_string(experts[i]));
    }
    Result<Lease> lease =
        bad.ok() ? rpc::to_lease(l, pool_->base(), pool_->pool_bytes()) : Result<Lease>(bad);
    if (lease.ok()) bad = pool_->check_slot(l.slot_id(), l.generation());
    if (!lease.ok() || !bad.ok()) {
      release_reply(reply);
      return lease.ok() ? bad : lease.status();
    }
    leases.push_back(std::move(lease).value());
  }
  return leases;
}

Status Client::Impl::release(std::span<const Lease> leases) {
  if (leases.empty()) return Status::Ok();
  MOEPOOL_RETURN_IF_ERROR(session_->health());
  v1::ReleaseRequest req;
  req.set_session_id(session_id_);
  for (const Lease& l : leases) {
    auto* ref = req.add_leases();
    ref->set_slot_id(l.slot_id);
    ref->set_generation(l.generation);
  }
  v1::ReleaseReply reply;
  grpc::ClientContext ctx;
  grpc::Status gs = worker_->Release(&ctx, req, &reply);
  return gs.ok() ? Status::Ok() : call_error(gs, "Release");
}

Status Client::Impl::release_async(std::vector<Lease> leases) {
  {
    std::lock_guard<std::mutex> lock(async_mu_);
    if (!async_error_.ok()) return std::exchange(async_error_, Status::Ok());
  }
  if (leases.empty()) return Status::Ok();
  MOEPOOL_RETURN_IF_ERROR(session_->health());
  // Owned by the call until its callback runs.
  struct Call {
    grpc::ClientContext ctx;
    v1::ReleaseRequest req;
    v1::ReleaseReply reply;
  };
  auto* call = new Call;
  call->req.set_session_id(session_id_);
  for (const Lease& l : leases) {
    auto* ref = call->req.add_leases();
    ref->set_slot_id(l.slot_id);
    ref->set_generation(l.generation);
  }
  with_deadline(&call->ctx, kAdminTimeout);
  {
    std::lock_guard<std::mutex> lock(async_mu_);
    async_in_flight_++;
  }
  worker_->async()->Release(&call->ctx, &call->req, &call->reply, [this, call](grpc::Status gs) {
    Status st = gs.ok() ? Status::Ok() : call_error(gs, "Release");
    delete call;
    std::lock_guard<std::mutex> lock(async_mu_);
    if (!st.ok() && async_error_.ok()) async_error_ = st;
    if (--async_in_flight_ == 0) async_cv_.notify_all();
  });
  return Status::Ok();
}

Client::Impl::~Impl() {
  std::unique_lock<std::mutex> lock(async_mu_);
  async_cv_.wait(lock, [this] { return async_in_flight_ == 0; });
}

Result<uint32_t> Client::Impl::prefetch(uint64_t model_id, uint32_t layer,
                                        std::span<const uint32_t> experts,
                                        std::span<const float> probabilities) {
  if (!probabilities.empty() && probabilities.size() != experts.size())
    return InvalidArgument("prefetch: " + std::to_string(probabilities.size()) +
                           " probabilities for " + std::to_string(experts.size()) + " experts");
  for (size_t i = 0; i < probabilities.size(); ++i) {
    if (!(probabilities[i] >= 0 && probabilities[i] <= 1))
      return InvalidArgument("prefetch: probability " + std::to_string(probabilities[i]) +
                             " of expert " + std::to_string(experts[i]) + " is outside [0, 1]");
  }
  if (experts.empty()) return 0u;
  MOEPOOL_RETURN_IF_ERROR(session_->health());
  v1::PrefetchRequest req;
  req.set_session_id(session_id_);
  req.set_model_id(model_id);
  req.set_layer(layer);
  req.mutable_experts()->Add(experts.begin(), experts.end());
  req.mutable_probabilities()->Add(probabilities.begin(), probabilities.end());
  v1::PrefetchReply reply;
  grpc::ClientContext ctx;
  grpc::Status gs = worker_->Prefetch(&ctx, req, &reply);
  if (!gs.ok()) return call_error(gs, "Prefetch");
  return reply.queued();
}

Result<PoolStats> Client::Impl::stats() {
  v1::StatsRequest req;
  v1::StatsReply reply;
  grpc::ClientContext ctx;
  grpc::Status gs = admin_->Stats(with_deadline(&ctx, kAdminTimeout), req, &reply);
  if (!gs.ok()) return call_error(gs, "Stats");
  return rpc::to_pool_stats(reply);
}

// ---- Client: the public face, exception-free ------------------------------------------

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::connect(const std::string& socket_path,
                                                const std::string& client_name) {
  return guarded("connect", [&]() -> Result<std::unique_ptr<Client>> {
    auto impl = Impl::connect(socket_path, client_name);
    if (!impl.ok()) return impl.status();
    return std::unique_ptr<Client>(new Client(std::move(impl).value()));
  });
}

Result<ModelInfo> Client::open_model(const std::string& path) {
  return guarded("open_model", [&] { return impl_->open_model(path); });
}

Result<std::vector<Lease>> Client::acquire(uint64_t model_id, uint32_t layer,
                                           std::span<const uint32_t> experts) {
  return acquire(model_id, layer, experts, {});
}

Result<std::vector<Lease>> Client::acquire(uint64_t model_id, uint32_t layer,
                                           std::span<const uint32_t> experts,
                                           std::span<const Lease> release_first) {
  return guarded("acquire",
                 [&] { return impl_->acquire(model_id, layer, experts, release_first); });
}

Status Client::release(std::span<const Lease> leases) {
  return guarded("release", [&] { return impl_->release(leases); });
}

Status Client::release_async(std::vector<Lease> leases) {
  return guarded("release", [&] { return impl_->release_async(std::move(leases)); });
}

Result<uint32_t> Client::prefetch(uint64_t model_id, uint32_t layer,
                                  std::span<const uint32_t> experts) {
  return guarded("prefetch", [&] { return impl_->prefetch(model_id, layer, experts, {}); });
}

Result<uint32_t> Client::prefetch(uint64_t model_id, uint32_t layer,
                                  std::span<const uint32_t> experts,
                                  std::span<const float> probabilities) {
  return guarded("prefetch",
                 [&] { return impl_->prefetch(model_id, layer, experts, probabilities); });
}

Result<PoolStats> Client::stats() {
  return guarded("stats", [&] { return impl_->stats(); });
}

uint64_t Client::session_id() const { return impl_->session_id(); }
const uint8_t* Client::pool_base() const { return impl_->pool_base(); }
uint64_t Client::pool_bytes() const { return impl_->pool_bytes(); }
const std::string& Client::pool_backend() const { return impl_->pool().backend(); }
std::array<uint8_t, 16> Client::device_uuid() const { return impl_->pool().device_uuid(); }
uint64_t Client::segment_bytes() const { return impl_->pool().segment_bytes(); }
uint32_t Client::segment_count() const { return impl_->pool().segment_count(); }
Result<std::vector<int>> Client::dup_segment_fds() const {
  return guarded("dup_segment_fds", [&] { return impl_->pool().dup_segment_fds(); });
}

}  // namespace moepool
