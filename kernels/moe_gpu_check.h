// Internal to moe_gpu.cpp: the checks every MoeGpu call makes before it records anything,
// and the layouts of the tables the kernels read. Pure functions; any thread.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kernels/moe_gpu.h"

namespace moepool::kernels {

// The bound segments' sizes and the device limits the checks need.
struct MoeGpuLimits {
  std::span<const uint64_t> segment_bytes;
  uint64_t max_storage_range = 0;  // maxStorageBufferRange
  uint32_t max_group_count_y = 0;  // maxComputeWorkGroupCount[1]
};

// Returns the embedded-module suffix of a supported weight type ("q4_k", "q8_0", "f16"),
// or nullptr.
const char* moe_gpu_variant(GgmlType type);

// Bytes of one row of `cols` weights of `type` (a supported type, cols whole blocks).
uint64_t moe_gpu_row_bytes(GgmlType type, uint32_t cols);

// Checks shape, spans (x [n_tokens][n_embd], ids/weights [n_tokens][top_k], out like x),
// every routed expert's table entries (segment bound, offset aligned, projection inside its
// segment), the id range, the tile (when tile != 0) and that every scratch buffer fits
// max_storage_range. Returns n_tokens, or InvalidArgument naming the field; `fn` prefixes
// the message. max_tokens == 0: no token limit.
Result<uint32_t> check_moe_call(const char* fn, const MoeGpuShape& shape,
                                std::span<const ExpertLocation> experts, std::span<const float> x,
                                std::span<const uint32_t> ids, std::span<const float> weights,
                                std::span<const float> out, uint32_t tile, uint32_t max_tokens,
                                const MoeGpuLimits& limits);

}  // namespace moepool::kernels
