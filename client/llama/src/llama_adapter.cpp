// The eval-callback side of libmoepool-llama (see moepool/llama_adapter.h for the flow).
#include "moepool/llama_adapter.h"

#include <dlfcn.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <mutex>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <unordered_set>

#include "ggml-backend.h"
#include "ggml.h"
#include "model_check.h"

namespace moepool {
namespace {

using Clock = std::chrono::steady_clock;

uint64_t ns_since(Clock::time_point t0) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - t0).count();
}

// Parses "<prefix><int>" exactly; -1 otherwise.
int parse_suffix_int(std::string_view s, std::string_view prefix) {
  if (!s.starts_with(prefix) || s.size() == prefix.size()) return -1;
  int v = 0;
  for (char c : s.substr(prefix.size())) {
    if (c < '0' || c > '9' || v > 1000000) return -1;
    v = v * 10 + (c - '0');
  }
  return v;
}

// The projection of "blk.<il>.ffn_<proj>_exps.weight", or nullopt for any other name.
std::optional<Projection> expert_weight_kind(std::string_view name, int il) {
  std::string prefix = "blk." + std::to_string(il) + ".ffn_";
  if (!name.starts_with(prefix) || !name.ends_with("_exps.weight")) return std::nullopt;
  std::string_view proj = name.substr(prefix.size(), name.size() - prefix.size() - 12);
  if (proj == "gate") return Projection::kGate;
  if (proj == "up") return Projection::kUp;
  if (proj == "down") return Projection::kDown;
  if (proj == "gate_up") return Projection::kGateUp;
  return std::nullopt;
}

// Calls f(int32_t*) for every element of a host I32 tensor, whatever its strides.
template <typename F>
void for_each_i32(const ggml_tensor* t, F f) {
  for (int64_t i3 = 0; i3 < t->ne[3]; ++i3)
    for (int64_t i2 = 0; i2 < t->ne[2]; ++i2)
      for (int64_t i1 = 0; i1 < t->ne[1]; ++i1)
        for (int64_t i0 = 0; i0 < t->ne[0]; ++i0)
          f(reinterpret_cast<int32_t*>(static_cast<char*>(t->data) + i0 * t->nb[0] +
                                       i1 * t->nb[1] + i2 * t->nb[2] + i3 * t->nb[3]));
}

// Pages out the expert ranges of llama.cpp's mapping off the decoding thread: llama.cpp
// never reads them again once redirected, and MADV_PAGEOUT of hundreds of MiB takes
// long enough to show in the first tokens. MADV_PAGEOUT only drops clean file pages or
// swaps; it never loses data. Thread: add() from the decoding thread; the destructor
// finishes the queue.
class PageoutThread {
 public:
  ~PageoutThread() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_one();
    if (thread_.joinable()) thread_.join();
  }
  void add(const void* data, size_t bytes) {
    const uintptr_t page = static_cast<uintptr_t>(sysconf(_SC_PAGESIZE));
    uintptr_t b = (reinterpret_cast<uintptr_t>(data) + page - 1) & ~(page - 1);
    uintptr_t e = (reinterpret_cast<uintptr_t>(data) + bytes) & ~(page - 1);
    if (e <= b) return;
    std::lock_guard<std::mutex> lock(mu_);
    queue_.emplace_back(b, e - b);
    if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
    cv_.notify_one();
  }

 private:
  void run() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
      if (queue_.empty()) return;  // stop_ and nothing left
      auto [addr, len] = queue_.front();
      queue_.erase(queue_.begin());
      lock.unlock();
#ifdef MADV_PAGEOUT
      madvise(reinterpret_cast<void*>(addr), len, MADV_PAGEOUT);
#endif
      lock.lock();
    }
  }

  std::mutex mu_;
  std::condition_variable cv_;  // pairs with mu_: queue_ grew or stop_ was set
  std::vector<std::pair<uintptr_t, size_t>> queue_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace

class LlamaAdapter::Impl {
 public:
  Client* client = nullptr;
  LlamaAdapterOptions options;
  ModelInfo info;
  LlamaModelFacts facts;
  Status status;
  LlamaAdapterStats stats;
  uint32_t max_ubatch = 0;
  std::unordered_set<const ggml_tensor*> dropped;  // expert tensors already paged out

  // The MoE layer between its ffn_moe_weights node and its last expert product.
  struct Patch {
    ggml_tensor* t;
    void* data;
    int64_t ne2;
    size_t nb2, nb3;
  };
  struct Active {
    int il = -1;
    const ggml_tensor* ids = nullptr;
    size_t n_products = 0;  // MUL_MAT_IDs the layer runs (one per projection)
    std::vector<Lease> leases;
    uint64_t stride = 0;
    int64_t view_slots = 0;  // largest slot index + 1
    std::unordered_map<uint8_t, uint64_t> proj_offset;
    std::vector<Patch> patches;
    size_t done = 0;
  } active;

  // Leases of the last finished layer, handed back with the next layer's acquire.
  std::vector<Lease> held;
  PageoutThread pageout;

  bool fail(Status st) {
    if (status.ok()) status = std::move(st);
    finish_layer();
    release_held();
    return false;
  }

  // Restores the patched tensors. The layer's pins go back with the next layer's
  // acquire (one round trip instead of two), or now after the model's last MoE layer.
  void finish_layer() {
    for (const Patch& p : active.patches) {
      p.t->data = p.data;
      p.t->ne[2] = p.ne2;
      p.t->nb[2] = p.nb2;
      p.t->nb[3] = p.nb3;
    }
    for (Lease& l : active.leases) held.push_back(std::move(l));
    bool last = !info.layers.empty() && active.il == static_cast<int>(info.layers.back().layer);
    active = Active{};
    if (last || !options.release_with_next_acquire) release_held();
  }

  void release_held() {
    if (held.empty()) return;
    auto t0 = Clock::now();
    Status st = client->release_async(std::move(held));
    held.clear();
    stats.release_ns += ns_since(t0);
    stats.releases++;
    if (!st.ok() && status.ok()) status = st;
  }

  const LayerShape* layer_shape(int il) const {
    for (const LayerShape& l : info.layers)
      if (static_cast<int>(l.layer) == il) return &l;
    return nullptr;
  }

  // Acquire (handing back the held leases) with polling while other sessions hold the
  // pool pinned full. The daemon releases the held leases before it acquires, so they are
  // gone after the first attempt whatever its outcome, unless releasing them failed.
  Result<std::vector<Lease>> acquire(uint32_t il, const std::vector<uint32_t>& experts) {
    auto deadline = Clock::now() + std::chrono::milliseconds(options.busy_wait_ms);
    for (;;) {
      auto leases = client->acquire(info.id, il, experts, held);
      if (leases.ok() || leases.status().message().find("release_first") == std::string::npos)
        held.clear();
      if (leases.ok() || leases.status().code() != Code::kResourceExhausted ||
          Clock::now() >= deadline)
        return leases;
      stats.busy_retries++;
      std::this_thread::sleep_for(std::chrono::microseconds(500));
    }
  }

  // ffn_moe_weights-<il> has run: lease the experts its ids name and rewrite the ids.
  bool begin_layer(ggml_tensor* weights, int il) {
    if (active.il >= 0) finish_layer();  // a layer whose products never ran (cancelled graph)
    const LayerShape* shape = layer_shape(il);
    if (!shape)
      return fail(FailedPrecondition("llama.cpp routes experts in layer " + std::to_string(il) +
                                     " but moepool's catalog has no experts there"));
    ggml_tensor* ids = weights->src[1];
    if (!ids || ids->type != GGML_TYPE_I32 || !ids->data ||
        (ids->buffer && !ggml_backend_buffer_is_host(ids->buffer)))
      return fail(FailedPrecondition("ffn_moe_topk-" + std::to_string(il) +
                                     " is not an I32 tensor in host memory (GPU backend?)"));
    std::vector<uint32_t> experts;
    bool bad = false;
    for_each_i32(ids, [&](int32_t* p) {
      if (*p < 0 || static_cast<uint32_t>(*p) >= shape->n_experts) bad = true;
      else experts.push_back(static_cast<uint32_t>(*p));
    });
    if (bad)
      return fail(Internal("ffn_moe_topk-" + std::to_string(il) + " holds an expert id outside 0.." +
                           std::to_string(shape->n_experts - 1)));
    std::sort(experts.begin(), experts.end());
    experts.erase(std::unique(experts.begin(), experts.end()), experts.end());
    active.il = il;
    active.ids = ids;
    active.n_products = shape->projections.size();
    if (experts.empty()) return true;  // no token reaches this layer's FFN (skipped outputs)

    auto t0 = Clock::now();
    auto leases = acquire(static_cast<uint32_t>(il), experts);
    stats.acquire_ns += ns_since(t0);
    if (!leases.ok())
      return fail(Status(leases.status().code(),
                         "layer " + std::to_string(il) + ": acquiring " +
                             std::to_string(experts.size()) + " experts: " +
                             leases.status().message()));
    active.leases = std::move(*leases);

    // One stride and one offset per projection for the whole layer, or no view exists.
    std::vector<int64_t> slot_of(shape->n_experts, -1);
    const uint8_t* base = client->pool_base();
    for (const Lease& l : active.leases) {
      if (active.stride == 0) active.stride = l.stride;
      if (l.stride != active.stride || l.slot != base + l.slot_index * l.stride)
        return fail(Internal("layer " + std::to_string(il) +
                             ": leases do not sit at one stride from the pool base"));
      for (const ProjectionView& pv : l.projections) {
        auto [it, fresh] = active.proj_offset.emplace(static_cast<uint8_t>(pv.kind), pv.offset_in_slot);
        if (!fresh && it->second != pv.offset_in_slot)
          return fail(Internal("layer " + std::to_string(il) +
                               ": a projection sits at different slot offsets for different "
                               "experts; the daemon must place it at one offset per layer"));
      }
      slot_of[l.expert] = static_cast<int64_t>(l.slot_index);
      active.view_slots = std::max<int64_t>(active.view_slots, l.slot_index + 1);
      stats.hits += l.hit ? 1 : 0;
    }
    stats.experts += active.leases.size();
    stats.layers++;
    for_each_i32(ids, [&](int32_t* p) { *p = static_cast<int32_t>(slot_of[*p]); });
    return true;
  }

  // Before a MUL_MAT_ID on the rewritten ids runs: point its weights at the pool.
  bool patch_product(ggml_tensor* node) {
    if (active.leases.empty()) return true;  // zero tokens: the product reads no expert
    ggml_tensor* w = node->src[0];
    auto kind = expert_weight_kind(w ? w->name : "", active.il);
    if (!kind)
      return fail(FailedPrecondition(std::string("node ") + node->name +
                                     " multiplies the routed ids with " + (w ? w->name : "?") +
                                     ", not an expert weight of layer " + std::to_string(active.il) +
                                     " (a LoRA adapter?); the adapter cannot serve it"));
    auto off = active.proj_offset.find(static_cast<uint8_t>(*kind));
    if (off == active.proj_offset.end())
      return fail(Internal(std::string(w->name) + ": the lease has no such projection"));
    if (w->buffer && !ggml_backend_buffer_is_host(w->buffer))
      return fail(FailedPrecondition(std::string(w->name) +
                                     " lives in device memory; the adapter serves CPU only"));
    if (static_cast<uint64_t>(w->nb[2]) + off->second > active.stride)
      return fail(Internal(std::string(w->name) + ": one expert does not fit its slot"));
    if (options.drop_expert_pages && dropped.insert(w).second) pageout.add(w->data, ggml_nbytes(w));
    active.patches.push_back({w, w->data, w->ne[2], w->nb[2], w->nb[3]});
    w->data = const_cast<uint8_t*>(client->pool_base()) + off->second;
    w->ne[2] = active.view_slots;
    w->nb[2] = active.stride;
    w->nb[3] = active.stride * active.view_slots;
    return true;
  }

  bool uses(const ggml_tensor* node, const ggml_tensor* t) const {
    for (int i = 0; i < GGML_MAX_SRC; ++i)
      if (node->src[i] == t) return true;
    return false;
  }

  bool eval(ggml_tensor* t, bool ask) {
    if (!status.ok()) return false;
    auto t0 = Clock::now();
    bool r = ask ? on_ask(t) : on_done(t);
    stats.callback_ns += ns_since(t0);
    return r;
  }

  bool on_ask(ggml_tensor* t) {
    if (t->op == GGML_OP_GET_ROWS && parse_suffix_int(t->name, "ffn_moe_weights-") >= 0) return true;
    if (active.il < 0 || !uses(t, active.ids)) return false;
    if (t->op == GGML_OP_MUL_MAT_ID && t->src[2] == active.ids) {
      patch_product(t);
      return true;  // after it ran, count it (and on error, stop the graph)
    }
    fail(FailedPrecondition(std::string("node ") + t->name + " (" + ggml_op_name(t->op) +
                            ") reads the routed expert ids of layer " + std::to_string(active.il) +
                            " besides the expert products (expert biases or scales?); the "
                            "adapter refuses it rather than compute wrong output"));
    return true;
  }

  bool on_done(ggml_tensor* t) {
    if (t->op == GGML_OP_GET_ROWS) {
      int il = parse_suffix_int(t->name, "ffn_moe_weights-");
      if (il >= 0) return begin_layer(t, il);
    }
    if (active.il >= 0 && t->op == GGML_OP_MUL_MAT_ID && t->src[2] == active.ids) {
      if (++active.done == active.n_products) finish_layer();
      return true;
    }
    return status.ok();
  }
};

namespace {

bool eval_callback(ggml_tensor* t, bool ask, void* user) {
  return static_cast<LlamaAdapter::Impl*>(user)->eval(t, ask);
}

bool abort_callback(void* user) { return !static_cast<LlamaAdapter::Impl*>(user)->status.ok(); }

}  // namespace

void load_llama_backends() {
  Dl_info dl{};
  std::string dir = ".";
  if (dladdr(reinterpret_cast<void*>(&ggml_backend_load_all_from_path), &dl) && dl.dli_fname) {
    dir = dl.dli_fname;
    dir = dir.substr(0, dir.find_last_of('/'));
  }
  ggml_backend_load_all_from_path(dir.c_str());
}

Result<std::unique_ptr<LlamaAdapter>> LlamaAdapter::create(Client* client,
                                                             const std::string& gguf_path,
                                                             LlamaAdapterOptions options) {
  auto facts = check_llama_model(gguf_path);
  if (!facts.ok()) return facts.status();
  auto info = client->open_model(gguf_path);
  if (!info.ok()) return info.status();
  auto impl = std::make_unique<Impl>();
  impl->client = client;
  impl->options = options;
  impl->facts = *facts;
  impl->info = std::move(*info);
  // Slots the whole pool has for the largest layer: each token brings at most
  // expert_used_count distinct experts, and a layer never needs more than all of its own.
  uint64_t biggest = 0;
  uint32_t most_experts = 0;
  for (const LayerShape& l : impl->info.layers) {
    uint64_t slot = 0;
    for (const ProjectionShape& p : l.projections) slot += (p.expert_bytes + 8191) / 4096 * 4096;
    biggest = std::max(biggest, slot);
    most_experts = std::max(most_experts, l.n_experts);
  }
  uint64_t slots = biggest ? client->pool_bytes() / biggest : 0;
  if (slots < impl->facts.expert_used_count)
    return ResourceExhausted("the pool (" + std::to_string(client->pool_bytes() >> 20) +
                             " MiB) holds " + std::to_string(slots) + " experts of " +
                             impl->info.name + ", fewer than the " +
                             std::to_string(impl->facts.expert_used_count) +
                             " one token routes to; grow pool.size");
  impl->max_ubatch = slots >= most_experts
                         ? UINT32_MAX
                         : static_cast<uint32_t>(slots / impl->facts.expert_used_count);
  return std::unique_ptr<LlamaAdapter>(new LlamaAdapter(std::move(impl)));
}

LlamaAdapter::LlamaAdapter(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

LlamaAdapter::~LlamaAdapter() {
  if (impl_->active.il >= 0) impl_->finish_layer();
  impl_->release_held();
}

void LlamaAdapter::configure(llama_model_params* p) const {
  p->load_mode = LLAMA_LOAD_MODE_MMAP;  // weights stay file pages; experts are never copied
  p->lazy_mode = LLAMA_LAZY_MODE_OFF;
  p->use_extra_bufts = false;  // repacked layouts are not the file's bytes the pool holds
  p->n_gpu_layers = 0;         // the pool is host memory
  p->check_tensors = false;
}

void LlamaAdapter::configure(llama_context_params* p) const {
  p->cb_eval = eval_callback;
  p->cb_eval_user_data = impl_.get();
  p->n_ubatch = std::min(p->n_ubatch, impl_->max_ubatch);
  p->op_offload = false;
}

void LlamaAdapter::attach(llama_context* ctx) {
  llama_set_abort_callback(ctx, abort_callback, impl_.get());
}

const Status& LlamaAdapter::status() const { return impl_->status; }
const LlamaAdapterStats& LlamaAdapter::stats() const { return impl_->stats; }
const ModelInfo& LlamaAdapter::model() const { return impl_->info; }
uint32_t LlamaAdapter::max_ubatch() const { return impl_->max_ubatch; }

}  // namespace moepool
