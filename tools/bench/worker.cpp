// A bench worker: acquire each step's experts layer by layer, verify, release.
#include "tools/bench/worker.h"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <memory>
#include <optional>
#include <thread>
#include <vector>

#include "moepool/client.h"
#include "tools/bench/expert_verifier.h"
#include "tools/bench/replay_schedule.h"
#include "tools/bench/worker_result.h"

namespace moepool::bench {
namespace {

// Retries of an acquire refused with kResourceExhausted (slots pinned by other workers).
constexpr int kAcquireRetries = 1000;

using Clock = std::chrono::steady_clock;

// The distinct ids of one step's layer, in trace order.
void distinct_experts(const uint8_t* ids, uint32_t top_k, std::vector<uint32_t>* out) {
  out->clear();
  for (uint32_t j = 0; j < top_k; ++j)
    if (std::find(out->begin(), out->end(), ids[j]) == out->end()) out->push_back(ids[j]);
}

// Checks that the daemon's view of the model is the catalog's, and that the model has
// the MoE layers and experts the trace needs.
Status check_model(const ModelInfo& info, const Catalog& catalog, const TraceShape& shape) {
  if (info.id != catalog.model_id())
    return FailedPrecondition("the daemon's model id " + std::to_string(info.id) +
                              " differs from the file's catalog id " +
                              std::to_string(catalog.model_id()));
  if (info.layers.size() != catalog.layers().size())
    return FailedPrecondition("the daemon reports " + std::to_string(info.layers.size()) +
                              " MoE layers, the file has " +
                              std::to_string(catalog.layers().size()));
  if (info.layers.size() < shape.layers)
    return InvalidArgument("the trace has " + std::to_string(shape.layers) +
                           " layers, the model only " + std::to_string(info.layers.size()) +
                           " MoE layers");
  for (uint32_t l = 0; l < shape.layers; ++l) {
    const MoeLayer& file = catalog.layers()[l];
    if (info.layers[l].layer != file.layer || info.layers[l].n_experts != file.n_experts)
      return FailedPrecondition("MoE layer " + std::to_string(l) +
                                ": the daemon's layer/expert count differs from the file's");
  }
  return Status::Ok();
}

class Replayer {
 public:
  Replayer(const WorkerPlan& plan, WorkerResult* result) : plan_(plan), r_(result) {}

  // Connects and opens the model; everything before the start signal.
  Status prepare() {
    const BenchOptions& o = *plan_.options;
    if (plan_.trace) {
      trace_ = plan_.trace;
    } else {
      SyntheticTraceSpec spec = plan_.synthetic;
      spec.seed += plan_.index;
      spec.steps = o.steps;
      auto t = generate_synthetic_trace(spec);
      if (!t.ok()) return t.status();
      own_trace_ = std::make_unique<Trace>(std::move(t).value());
      trace_ = own_trace_.get();
    }
    const uint64_t first = plan_.trace ? o.first_sequence + plan_.index : o.first_sequence;
    schedule_ = replay_schedule(*trace_, first, o.steps);
    if (schedule_.size() != o.steps)
      return InvalidArgument(trace_->name() + ": no sequence has any step to replay");
    if (o.verify) {
      auto v = ExpertVerifier::open(*plan_.catalog);
      if (!v.ok()) return v.status();
      verifier_.emplace(std::move(v).value());
    }
    auto client = Client::connect(o.socket, "moepool-bench/" + std::to_string(plan_.index));
    if (!client.ok()) return client.status();
    client_ = std::move(client).value();
    auto info = client_->open_model(o.model);
    if (!info.ok()) return info.status();
    model_ = std::move(info).value();
    return check_model(model_, *plan_.catalog, trace_->shape());
  }

  // Replays the schedule; counters in the result cover whatever was done before an error.
  Status run() {
    const TraceShape& shape = trace_->shape();
    r_->acquire_ns.reserve(schedule_.size() * shape.layers);
    std::vector<uint32_t> experts, next;
    const auto start = Clock::now();
    Status st;
    for (uint64_t step : schedule_) {
      for (uint32_t l = 0; l < shape.layers && st.ok(); ++l)
        st = layer_step(step, l, experts, next);
      if (!st.ok()) break;
      ++r_->steps;
    }
    r_->seconds = std::chrono::duration<double>(Clock::now() - start).count();
    return st;
  }

 private:
  Status layer_step(uint64_t step, uint32_t l, std::vector<uint32_t>& experts,
                    std::vector<uint32_t>& next) {
    const BenchOptions& o = *plan_.options;
    const uint32_t layer = model_.layers[l].layer;
    distinct_experts(trace_->step_layer(step, l), trace_->shape().top_k, &experts);
    const auto t0 = Clock::now();
    auto leases = client_->acquire(model_.id, layer, experts);
    // The daemon refuses rather than waits when other workers pin every slot; like an
    // engine, back off and retry a bounded number of times (counted in the latency).
    for (int retry = 0; retry < kAcquireRetries && !leases.ok() &&
                        leases.status().code() == Code::kResourceExhausted;
         ++retry) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
      leases = client_->acquire(model_.id, layer, experts);
    }
    const auto t1 = Clock::now();
    ++r_->acquire_calls;
    r_->acquire_ns.push_back(static_cast<uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(t1 - t0).count()));
    if (!leases.ok())
      return Status(leases.status().code(), "acquire layer " + std::to_string(layer) + " at step " +
                                                std::to_string(step) + ": " +
                                                leases.status().message());
    if (leases->size() != experts.size())
      return Internal("acquire layer " + std::to_string(layer) + " returned " +
                      std::to_string(leases->size()) + " leases for " +
                      std::to_string(experts.size()) + " experts");
    r_->accesses += experts.size();
    for (const Lease& lease : *leases) r_->hits += lease.hit ? 1 : 0;

    Status st;
    if (o.prefetch && l + 1 < trace_->shape().layers) {
      distinct_experts(trace_->step_layer(step, l + 1), trace_->shape().top_k, &next);
      auto started = client_->prefetch(model_.id, model_.layers[l + 1].layer, next);
      ++r_->prefetch_calls;
      if (started.ok())
        r_->prefetch_reads += *started;
      else
        st = Status(started.status().code(), "prefetch: " + started.status().message());
    }
    if (o.verify) {
      const MoeLayer& file_layer = plan_.catalog->layers()[l];
      for (size_t i = 0; i < leases->size() && st.ok(); ++i)
        st = verifier_->verify(file_layer, experts[i], (*leases)[i], client_->pool_base(),
                               &r_->bytes_verified, &r_->mismatches, &r_->first_mismatch);
    }
    Status rel = client_->release(*leases);
    if (!rel.ok() && st.ok())
      st = Status(rel.code(), "release layer " + std::to_string(layer) + ": " + rel.message());
    return st;
  }

  const WorkerPlan& plan_;
  WorkerResult* r_;
  const Trace* trace_ = nullptr;
  std::unique_ptr<Trace> own_trace_;
  std::vector<uint64_t> schedule_;
  std::optional<ExpertVerifier> verifier_;
  std::unique_ptr<Client> client_;
  ModelInfo model_;
};

}  // namespace

int run_worker(const WorkerPlan& plan, int go_fd, int result_fd) {
  WorkerResult result;
  result.index = plan.index;
  {
    Replayer replayer(plan, &result);
    result.error = replayer.prepare();
    if (result.error.ok()) {
      if (!write_ready(result_fd).ok()) return 1;
      char go = 0;
      ssize_t n;
      do {
        n = ::read(go_fd, &go, 1);
      } while (n < 0 && errno == EINTR);
      if (n != 1) result.error = Unavailable("cancelled before the start (another worker failed)");
    }
    if (result.error.ok()) result.error = replayer.run();
  }  // the client disconnects here, before the parent reads the daemon's final stats
  return write_result(result_fd, result).ok() && result.error.ok() ? 0 : 1;
}

}  // namespace moepool::bench
