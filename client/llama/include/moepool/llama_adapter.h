// libmoepool-llama: a stock llama.cpp decodes with its routed experts read straight out
// of moepool's shared pool instead of its own copy of the model file.
//
// How: llama.cpp's eval callback sees each MoE layer's `ffn_moe_weights-<il>` node (the
// GET_ROWS that picks the router weights of the selected experts) after it ran. The
// adapter reads the selected expert ids from its src[1] (`ffn_moe_topk-<il>`), acquires
// the layer's distinct experts from moepoold in one call, rewrites the ids into pool slot
// indices, and, just before each of the layer's MUL_MAT_ID nodes runs, points its weight
// tensor (`blk.<il>.ffn_{gate,up,down}_exps.weight`) at the pool: data = pool base + the
// projection's offset in the slot, nb[2] = the slot class's stride. ggml then reads expert
// `slot` at data + slot * nb[2], i.e. inside the pool. After the layer's last expert
// product the tensors are restored; the pins go back with the next layer's acquire.
//
// Use (see tools/llama/main.cpp):
//   auto adapter = LlamaAdapter::create(client, gguf_path);   // refuses what it can't serve
//   llama_model_params mp = llama_model_default_params();  adapter->configure(&mp);
//   llama_model* model = llama_model_load_from_file(gguf_path, mp);
//   llama_context_params cp = llama_context_default_params(); adapter->configure(&cp);
//   llama_context* ctx = llama_init_from_model(model, cp);  adapter->attach(ctx);
//   if (llama_decode(ctx, batch) != 0 || !adapter->status().ok()) ... stop
//
// Limits: CPU backend only (the pool is host memory); one llama_context per adapter and
// per model (the weight tensors are patched in place while a layer runs); llama.cpp's
// mmap load maps the whole file with MAP_POPULATE, so loading still reads it once (the
// adapter then unmaps the expert ranges from the process, see docs/llama.md).
// Thread safety: llama.cpp calls the callback from the thread running llama_decode; use
// one adapter from one decoding thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "llama.h"
#include "moepool/client.h"

namespace moepool {

struct LlamaAdapterOptions {
  // How long one layer may wait for slots other sessions have pinned before its acquire
  // fails (the daemon never queues; the adapter polls it).
  uint32_t busy_wait_ms = 30000;
  // Hand a layer's pins back with the next layer's Acquire (one round trip per layer
  // instead of two); the model's last MoE layer releases at once, without waiting for the
  // reply. Off: every layer releases at once, without waiting.
  bool release_with_next_acquire = true;
  // Unmap the expert tensors' pages from llama.cpp's mapping once they are redirected.
  bool drop_expert_pages = true;
};

// Counters of one adapter; all cumulative.
struct LlamaAdapterStats {
  uint64_t layers = 0;          // MoE layer evaluations served from the pool
  uint64_t experts = 0;         // experts leased (distinct per layer evaluation)
  uint64_t hits = 0;            // of those, already resident or loading
  uint64_t busy_retries = 0;    // acquires retried because the pool was pinned full
  uint64_t acquire_ns = 0;      // time in Client::acquire (round trip + reads)
  uint64_t releases = 0;        // separate Release calls (the rest rode on an Acquire)
  uint64_t release_ns = 0;      // time spent starting those (Client::release_async)
  uint64_t callback_ns = 0;     // all time spent in the eval callback
};

// Loads llama.cpp's backends (the CPU variants) from the directory the linked
// libggml was loaded from; call once before loading a model.
void load_llama_backends();

class LlamaAdapter {
 public:
  // Opens `gguf_path` in moepool through `client` (which must outlive the adapter) and
  // checks the model: routed experts in every MoE layer, no per-expert biases or scales
  // (those read the same expert ids, which the adapter rewrites).
  static Result<std::unique_ptr<LlamaAdapter>> create(
      Client* client, const std::string& gguf_path, LlamaAdapterOptions options = {});
  ~LlamaAdapter();

  // Model parameters the approach needs: mmap load, no repacked (extra) buffer types, no
  // GPU offload, no lazy tensors.
  void configure(llama_model_params* params) const;
  // Context parameters: installs the eval callback and caps n_ubatch (and n_batch) so one
  // ubatch's distinct experts of a layer always fit in the pool.
  void configure(llama_context_params* params) const;
  // Installs an abort callback so a failed layer stops the decode.
  void attach(llama_context* ctx);

  // The first error met by the callback, or Ok. Check after every llama_decode: llama.cpp
  // may report success for a graph the adapter had to stop.
  const Status& status() const;
  const LlamaAdapterStats& stats() const;
  const ModelInfo& model() const;
  // The largest ubatch configure() allows (the whole pool holds at least that many
  // tokens' worth of distinct experts of one layer).
  uint32_t max_ubatch() const;

  class Impl;

 private:
  explicit LlamaAdapter(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moepool
