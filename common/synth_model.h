// Synthetic GGUF MoE models whose every byte anyone can recompute.
//
// A model has `layers` MoE layers of `experts` routed experts in the expert tensors
//   blk.L.ffn_gate_exps.weight, blk.L.ffn_up_exps.weight  [embd, ffn, experts]
//   blk.L.ffn_down_exps.weight                            [ffn, embd, experts]
// (or one fused blk.L.ffn_gate_up_exps.weight [embd, 2*ffn, experts]) of the chosen type,
// plus small F32/F16 non-expert tensors of real shape (embeddings, attention, norms,
// router, shared experts) and plausible qwen2moe or deepseek2 metadata.
// qwen3moe models are complete: every tensor and key llama.cpp's qwen3moe loader requires
// (no shared experts, attention q/k norms, separate output.weight), so a stock llama.cpp
// loads and decodes them (token ids only: tokenizer.ggml.model is "no_vocab").
// Optional extras any arch can carry, which engines that stream experts must detect:
//   expert_bias:  blk.L.ffn_{gate,up}_exps.bias F32 [ffn, experts] (gate_up: [2*ffn, ...])
//                 and blk.L.ffn_down_exps.bias F32 [embd, experts]
//   expert_scale: blk.L.ffn_{gate,up,down}_exps.scale F32 [experts] (or gate_up_exps.scale)
// Tensor contents are synth_fill(seed, name, type, offset): a pure function, so tests and
// `moepool-bench --verify` check any byte range of any tensor without the writer's help.
// The seed is also stored in the file as moepool.synth.seed (u64).
// Thread safety: pure functions and value types; any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/catalog.h"
#include "common/ggml_types.h"
#include "common/status.h"

namespace moepool {

enum class SynthArch : uint8_t { kQwen2Moe, kDeepseek2, kQwen3Moe };
// Returns "qwen2moe", "deepseek2" or "qwen3moe" (the general.architecture value).
std::string_view synth_arch_name(SynthArch arch);
// Returns the architecture called `name`, or nullopt.
std::optional<SynthArch> synth_arch_by_name(std::string_view name);

// What to generate. Zero top_k means synth_default_top_k(arch, experts).
struct SynthSpec {
  std::string out;  // file to write; with split > 1 the base of the part names
  uint32_t layers = 2;
  uint32_t experts = 8;
  uint64_t embd = 256;
  uint64_t ffn = 512;
  GgmlType type = GgmlType::Q4_K;
  uint64_t seed = 0;
  uint32_t split = 1;
  SynthArch arch = SynthArch::kQwen2Moe;
  uint32_t top_k = 0;
  bool fused = false;
  bool expert_bias = false;   // add blk.L.ffn_*_exps.bias tensors (see above)
  bool expert_scale = false;  // add blk.L.ffn_*_exps.scale tensors (see above)
};

// Returns the default shape of `arch` for moepool-synth: for qwen3moe 4 layers x 8
// experts, embd 256, ffn 256, q4_K (every expert projection a multiple of 4 KiB for f32,
// f16, q8_0 and q4_K); for the others the SynthSpec member defaults. `out` is empty.
SynthSpec synth_default_spec(SynthArch arch);
// Returns the experts used per token when a spec leaves top_k 0: for qwen3moe
// clamp(experts / 4, 2, 8), otherwise 8; never more than `experts`.
uint32_t synth_default_top_k(SynthArch arch, uint32_t experts);

// qwen3moe attention: head_dim 64 (32 when embd is not a multiple of 64), embd / head_dim
// query heads, half as many KV heads when that count is even.
struct SynthHeads {
  uint64_t n_head, n_head_kv, head_dim;
};
SynthHeads synth_qwen3moe_heads(uint64_t embd);

// Limits enforced by synth_validate.
inline constexpr uint32_t kSynthMaxLayers = 4096;
inline constexpr uint32_t kSynthMaxExperts = 65536;
inline constexpr uint64_t kSynthMaxDim = uint64_t{1} << 20;
inline constexpr uint32_t kSynthMaxSplit = 65535;  // split.count is a u16 in GGUF
inline constexpr uint64_t kSynthMaxModelBytes = uint64_t{1} << 50;
// llama.cpp's LLAMA_MAX_LAYERS and LLAMA_MAX_EXPERTS, enforced for qwen3moe.
inline constexpr uint32_t kSynthQwen3MaxLayers = 512;
inline constexpr uint32_t kSynthQwen3MaxExperts = 1024;

// Returns true iff `type` can hold expert weights (float and quant storage types; not
// q8_1, integer or f64 types).
bool synth_expert_type_ok(GgmlType type);
// Every type synth_expert_type_ok accepts, in id order.
std::vector<GgmlType> synth_expert_types();

// Checks a spec: counts in range, embd and ffn multiples of the type's block size, an
// expert-capable type, top_k <= experts, split <= number of tensors, under 1 PiB; for
// qwen3moe also embd a multiple of 32, llama.cpp's layer and expert limits, no fused
// gate_up, no q8_K experts. The error names the field ("ffn 500 is not a multiple of the
// q4_K block size 256").
Status synth_validate(const SynthSpec& spec);

// Returns the path of part `index` (0-based) of `count`: "/x/model.gguf" ->
// "/x/model-00001-of-00003.gguf", as llama.cpp's gguf-split names them.
std::string synth_split_path(const std::string& out, uint32_t index, uint32_t count);

// Bytes of one expert of projection `kind` (fused gate_up counts both halves), or an
// error if a row is not a whole number of blocks.
Result<uint64_t> synth_expert_bytes(GgmlType type, ProjKind kind, uint64_t embd, uint64_t ffn);

// One tensor as synth lays it out.
struct SynthTensor {
  std::string name;
  GgmlType type;
  std::vector<uint64_t> ne;  // ne[0] innermost (GGUF order)
  uint64_t bytes = 0;
  uint32_t file_index = 0;       // which part
  uint64_t offset = 0;           // absolute offset in that part
  int32_t layer = -1;            // -1 for tensors outside blk.N
  std::optional<ProjKind> proj;  // set for expert tensors
  uint64_t expert_bytes = 0;     // bytes of one expert (expert tensors only)
};

struct SynthFile {
  std::string path;
  uint64_t size = 0;
  uint64_t data_offset = 0;  // start of the tensor data section
  uint32_t tensor_count = 0;
};

// The complete expected layout of a spec's files.
struct SynthLayout {
  SynthSpec spec;                       // with top_k resolved
  std::vector<SynthFile> files;         // one per part, in order
  std::vector<SynthTensor> tensors;     // in file order
  uint64_t expert_bytes_per_layer = 0;  // one expert, all projections
  uint64_t expert_tensor_bytes = 0;     // all expert tensors of all layers
  uint64_t total_bytes = 0;             // sum of file sizes

  // Returns the tensor called `name`, or nullptr.
  const SynthTensor* find(std::string_view name) const;
};

// Computes the layout of a valid spec without writing anything.
Result<SynthLayout> synth_layout(const SynthSpec& spec);

// Writes the model's file(s) and returns their layout.
Result<SynthLayout> synth_write(const SynthSpec& spec);

// Fills `out` with bytes [offset, offset + out.size()) of tensor `tensor_name` of `type`
// in a model synthesised with `seed`. Definition: raw byte i of a tensor is byte i % 8
// (little-endian) of the (i / 8)-th output of splitmix64 seeded with
// seed ^ fnv1a64(tensor_name); then, so that the values are valid, every f32/f16/bf16
// element becomes a finite value with |v| in [2^-8, 1), and every quant block's scale
// fields (d, dmin, m, E8M0 exponent) a small positive finite value derived from their raw
// bits. Quant payload bytes stay raw.
void synth_fill(uint64_t seed, std::string_view tensor_name, GgmlType type, uint64_t offset,
                std::span<uint8_t> out);

}  // namespace moepool
