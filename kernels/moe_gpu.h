// The routed MoE FFN on a Vulkan device, reading each expert's weights in place from the
// buffers they live in (imported pool segments, VRAM pool segments or a test's buffers),
// addressed by a table of (segment, byte offset) per projection: weights are never copied.
// decode(): a few tokens, two dispatches (gate+up with SiLU, then down accumulated with the
// router weights). prefill(): many tokens grouped by expert (group_by_expert) in tiles of
// 32/64/128 routed pairs; each tile reads its expert's weights once for all its tokens.
// Result: out[t] = sum_k weights[t][k] * down_e(silu(gate_e . x[t]) * (up_e . x[t])),
// e = ids[t][k], as moe_ffn_reference computes it (F32 accumulation; the tests bound NMSE).
// Thread safety: one MoeGpu per Device; one thread at a time (it owns a command pool).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "common/ggml_types.h"
#include "kernels/vk_device.h"
#include "moepool/status.h"

namespace moepool::kernels {

// Where one projection's bytes start: a byte offset inside the buffer bound as `segment`.
struct ProjLocation {
  uint32_t segment = 0;
  uint64_t offset = 0;
};

// One expert's three projections, row-major ggml rows as in GGUF: gate and up are
// [n_ff rows][n_embd cols] of gate_up_type, down is [n_embd rows][n_ff cols] of down_type.
struct ExpertLocation {
  ProjLocation gate, up, down;
};

// The layer's shape. Types: Q4_K, Q8_0 or F16 (gate and up share one type). Rows are whole
// blocks: n_embd (the columns of gate/up) and n_ff (the columns of down) must be multiples
// of 256 for a Q4_K projection and of 32 otherwise (so both are always multiples of 32).
struct MoeGpuShape {
  uint32_t n_embd = 0;
  uint32_t n_ff = 0;
  uint32_t top_k = 0;
  GgmlType gate_up_type = GgmlType::Q4_K;
  GgmlType down_type = GgmlType::Q4_K;
};

// What the decode kernels multiply Q4_K weights with (a layer whose three projections are
// all Q4_K; any other layer, and prefill, use F32 activations):
//  kF32: the F32 activations as given (matches the F32 reference to ~1e-12 NMSE).
//  kInt8: x, and h before down, quantized to int8 in blocks of 32 (scale max|v| / 127, as
//    ggml's Q8_1; x on the host as it is uploaded, h by the gate+up kernel), multiplied
//    with 4x8-bit integer dot products: far less work per weight. The result is
//    moe_ffn_reference(..., int8_activations = true)'s to ~1e-14; against the F32 reference
//    it carries the quantization error (NMSE ~1e-5 with x uniform in [-1, 1]). Needs
//    Device::has_int8_decode() (shaderIntegerDotProduct) and, with decode_x_shared, n_embd /
//    32 * 48 bytes of shared memory (x[t], quantized).
//  kDefault: kInt8 where it can run, else kF32.
enum class MoeGpuActivations : uint32_t { kDefault = 0, kF32 = 1, kInt8 = 2 };

// A kernel option the tuning may force: kDefault is what the kernels pick for the device.
enum class MoeGpuSwitch : uint32_t { kDefault = 0, kOff = 1, kOn = 2 };

// Launch parameters, fed to the kernels as specialization constants (no recompile):
// the bench tunes them on the target GPU. 0 = the default for the device.
struct MoeGpuTuning {
  // Threads per decode workgroup (default 256 on the int8 path, 128 on the F32 one).
  uint32_t decode_workgroup = 0;
  // Rows per decode workgroup (default: subgroups * rows at once; the int8 gate+up kernel
  // takes it only when a multiple of 32, else 32: it quantizes whole blocks of h).
  uint32_t decode_rows = 0;
  uint32_t prefill_rows = 0;  // weight rows per prefill workgroup: 32 or 64 (default 64)
  // Rows one subgroup computes at once in decode gate+up, 1..4 (default 1 on the int8 path,
  // 2 on the F32 one, whose x loads each serve that many rows).
  uint32_t decode_rows_at_once = 0;
  // Rows at once of the down kernel, 1..8 (default 2, or decode_rows_at_once when that is set).
  uint32_t decode_down_rows_at_once = 0;
  // Weight rows per prefill workgroup for the 128-pair tiles, 32 or 64 (default 32: at 64
  // each thread holds 64 accumulators).
  uint32_t prefill_wide_rows = 0;
  // Activations of the Q4_K decode kernels (see MoeGpuActivations).
  MoeGpuActivations decode_activations = MoeGpuActivations::kDefault;
  // The int8 gate+up kernel copies x[t] (uploaded quantized) into shared memory before its
  // rows (kOn) or reads it from global memory at every step (kOff).
  MoeGpuSwitch decode_x_shared = MoeGpuSwitch::kDefault;
};

// Decode takes at most this many tokens per call (the kernel keeps a sum per token).
inline constexpr uint32_t kMaxDecodeTokens = 8;
// The prefill tiles: routed (token, k) pairs per expert tile.
inline constexpr uint32_t kPrefillTiles[] = {32, 64, 128};

class MoeGpu {
 public:
  // Loads nothing yet: pipelines are built on first use and cached. kUnavailable when the
  // device lacks subgroup arithmetic in compute shaders.
  static Result<std::unique_ptr<MoeGpu>> create(const vk::Device& device);
  ~MoeGpu();
  MoeGpu(const MoeGpu&) = delete;
  MoeGpu& operator=(const MoeGpu&) = delete;

  // The most segments one bind_segments() call may bind (from the device's descriptor limits).
  uint32_t max_segments() const;

  // Binds the buffers experts live in: ProjLocation::segment indexes `buffers`. Each buffer
  // must have been created with VK_BUFFER_USAGE_STORAGE_BUFFER_BIT and hold at least
  // bytes[i] <= maxStorageBufferRange bytes; the caller keeps them alive until the next
  // bind_segments() or the MoeGpu's destruction.
  Status bind_segments(std::span<const VkBuffer> buffers, std::span<const uint64_t> bytes);

  // Sets the launch parameters of later calls (pipelines are rebuilt as needed).
  Status set_tuning(const MoeGpuTuning& tuning);

  // decode: x and out are [n_tokens][n_embd] F32 (n_tokens 1..kMaxDecodeTokens; out is
  // overwritten), ids and weights are [n_tokens][top_k]; experts is indexed by expert id.
  // Validates everything first (ids, segments, offsets, alignment: Q4_K projections start
  // 4-byte aligned, Q8_0/F16 2-byte aligned; shapes) and names the bad field.
  Status decode(const MoeGpuShape& shape, std::span<const ExpertLocation> experts,
                std::span<const float> x, std::span<const uint32_t> ids,
                std::span<const float> weights, std::span<float> out);

  // prefill: as decode, any number of tokens, routed pairs grouped by expert in tiles of
  // `tile` pairs (32, 64 or 128); the per-token sum over k runs in k order (deterministic).
  // Each tile runs at the narrowest width of kPrefillTiles that holds its pairs (a tile of
  // 40 pairs under tile 128 runs 64 wide), so wider `tile` only saves weight reads.
  Status prefill(const MoeGpuShape& shape, std::span<const ExpertLocation> experts,
                 std::span<const float> x, std::span<const uint32_t> ids,
                 std::span<const float> weights, uint32_t tile, std::span<float> out);

  // For the bench: uploads x/ids/weights once, then records `repeats` decodes (prefills)
  // back to back in one command buffer, and returns the mean GPU time of one, in seconds,
  // from timestamp queries around each. Validates as decode (prefill) does; FailedPrecondition
  // when the queue has no timestamps. The result is left in out (of the last repeat).
  Result<double> time_decode(const MoeGpuShape& shape, std::span<const ExpertLocation> experts,
                             std::span<const float> x, std::span<const uint32_t> ids,
                             std::span<const float> weights, uint32_t repeats,
                             std::span<float> out);
  Result<double> time_prefill(const MoeGpuShape& shape, std::span<const ExpertLocation> experts,
                              std::span<const float> x, std::span<const uint32_t> ids,
                              std::span<const float> weights, uint32_t tile, uint32_t repeats,
                              std::span<float> out);

  // GPU seconds of each dispatch of the last timed call's last repeat, in order (decode:
  // gate+up, down; prefill: gate+up and down per tile width, then the reduce). For tuning.
  const std::vector<double>& last_step_seconds() const;

  // The last call's dispatches, in order, each as "module/id=value/..." (the embedded module
  // and its specialization constants, ids as in kernels/shaders): which kernels ran, and how.
  const std::vector<std::string>& last_dispatches() const;

 private:
  struct Impl;
  explicit MoeGpu(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moepool::kernels
