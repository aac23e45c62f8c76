#include "kernels/moe_gpu_check.h"

#include <algorithm>
#include <vector>

#include "kernels/dequant.h"

namespace moepool::kernels {
namespace {

std::string str(uint64_t v) { return std::to_string(v); }

// Columns of a `type` row must be whole blocks (256 for Q4_K, 32 otherwise: the kernels'
// units of work and the prefill's 32-column steps).
Status check_cols(const char* fn, const char* field, GgmlType type, uint32_t cols) {
  const uint32_t block = type == GgmlType::Q4_K ? kQ4_KBlockSize : 32u;
  if (cols == 0 || cols % block != 0) {
    return InvalidArgument(std::string(fn) + ": shape." + field + " = " + str(cols) +
                           " is not a positive multiple of " + str(block) + " (" +
                           std::string(ggml_type_name(type)) + " rows)");
  }
  return Status::Ok();
}

Status check_proj(const char* fn, uint32_t expert, const char* name, const ProjLocation& p,
                  GgmlType type, uint64_t bytes, const MoeGpuLimits& limits) {
  const std::string where = std::string(fn) + ": experts[" + str(expert) + "]." + name;
  if (p.segment >= limits.segment_bytes.size()) {
    return InvalidArgument(where + ".segment = " + str(p.segment) + " is not bound (" +
                           str(limits.segment_bytes.size()) + " segments bound)");
  }
  const uint64_t align = type == GgmlType::Q4_K ? 4 : 2;
  if (p.offset % align != 0) {
    return InvalidArgument(where + ".offset = " + str(p.offset) + " is not " + str(align) +
                           "-byte aligned (" + std::string(ggml_type_name(type)) + ")");
  }
  const uint64_t seg = limits.segment_bytes[p.segment];
  if (p.offset > seg || bytes > seg - p.offset) {
    return InvalidArgument(where + ": offset " + str(p.offset) + " + " + str(bytes) +
                           " bytes is past the end of segment " + str(p.segment) + " (" + str(seg) +
                           " bytes)");
  }
  return Status::Ok();
}

}  // namespace

const char* moe_gpu_variant(GgmlType type) {
  switch (type) {
    case GgmlType::Q4_K:
      return "q4_k";
    case GgmlType::Q8_0:
      return "q8_0";
    case GgmlType::F16:
      return "f16";
    default:
      return nullptr;
  }
}

uint64_t moe_gpu_row_bytes(GgmlType type, uint32_t cols) {
  switch (type) {
    case GgmlType::Q4_K:
      return uint64_t{cols} / kQ4_KBlockSize * kQ4_KBlockBytes;
    case GgmlType::Q8_0:
      return uint64_t{cols} / kQ8_0BlockSize * kQ8_0BlockBytes;
    default:
      return uint64_t{cols} * 2;
  }
}

Result<uint32_t> check_moe_call(const char* fn, const MoeGpuShape& shape,
                                std::span<const ExpertLocation> experts, std::span<const float> x,
                                std::span<const uint32_t> ids, std::span<const float> weights,
                                std::span<const float> out, uint32_t tile, uint32_t max_tokens,
                                const MoeGpuLimits& limits) {
  const std::string f = fn;
  if (!moe_gpu_variant(shape.gate_up_type)) {
    return InvalidArgument(f + ": shape.gate_up_type " +
                           std::string(ggml_type_name(shape.gate_up_type)) +
                           " is not supported (q4_K, q8_0, f16 are)");
  }
  if (!moe_gpu_variant(shape.down_type)) {
    return InvalidArgument(f + ": shape.down_type " + std::string(ggml_type_name(shape.down_type)) +
                           " is not supported (q4_K, q8_0, f16 are)");
  }
  MOEPOOL_RETURN_IF_ERROR(check_cols(fn, "n_embd", shape.gate_up_type, shape.n_embd));
  MOEPOOL_RETURN_IF_ERROR(check_cols(fn, "n_ff", shape.down_type, shape.n_ff));
  if (shape.top_k == 0) return InvalidArgument(f + ": shape.top_k must be > 0");
  if (x.empty() || x.size() % shape.n_embd != 0) {
    return InvalidArgument(f + ": x has " + str(x.size()) +
                           " floats, not a positive multiple of n_embd " + str(shape.n_embd));
  }
  const uint64_t n_tokens = x.size() / shape.n_embd;
  if (max_tokens != 0 && n_tokens > max_tokens) {
    return InvalidArgument(f + ": " + str(n_tokens) + " tokens; at most " + str(max_tokens) +
                           " per call");
  }
  if (n_tokens > limits.max_group_count_y) {
    return InvalidArgument(f + ": " + str(n_tokens) + " tokens exceed the device's " +
                           str(limits.max_group_count_y) + " workgroups; split the batch");
  }
  if (out.size() != x.size()) {
    return InvalidArgument(f + ": out has " + str(out.size()) + " floats, x has " + str(x.size()));
  }
  const uint64_t n_pairs = n_tokens * shape.top_k;
  if (ids.size() != n_pairs || weights.size() != n_pairs) {
    return InvalidArgument(f + ": ids (" + str(ids.size()) + ") and weights (" +
                           str(weights.size()) + ") must hold n_tokens * top_k = " + str(n_pairs));
  }
  if (tile != 0 && tile != 32 && tile != 64 && tile != 128) {
    return InvalidArgument(f + ": tile " + str(tile) + " is not 32, 64 or 128");
  }
  if (limits.segment_bytes.empty()) {
    return FailedPrecondition(f + ": no segments bound (call bind_segments first)");
  }
  // Scratch: x/out, h [n_pairs][n_ff], partial [n_pairs][n_embd], all F32.
  const uint64_t biggest = std::max(n_pairs * shape.n_ff, n_pairs * shape.n_embd) * 4;
  if (biggest > limits.max_storage_range) {
    return InvalidArgument(f + ": " + str(n_tokens) + " tokens need a " + str(biggest) +
                           "-byte scratch buffer, over the device's maxStorageBufferRange " +
                           str(limits.max_storage_range) + "; split the batch");
  }
  const uint64_t gate_bytes = moe_gpu_row_bytes(shape.gate_up_type, shape.n_embd) * shape.n_ff;
  const uint64_t down_bytes = moe_gpu_row_bytes(shape.down_type, shape.n_ff) * shape.n_embd;
  std::vector<bool> checked(experts.size(), false);
  for (uint64_t i = 0; i < ids.size(); ++i) {
    const uint32_t e = ids[i];
    if (e >= experts.size()) {
      return InvalidArgument(f + ": ids[" + str(i) + "] = " + str(e) + " is out of range (" +
                             str(experts.size()) + " experts)");
    }
    if (checked[e]) continue;
    checked[e] = true;
    const ExpertLocation& loc = experts[e];
    MOEPOOL_RETURN_IF_ERROR(
        check_proj(fn, e, "gate", loc.gate, shape.gate_up_type, gate_bytes, limits));
    MOEPOOL_RETURN_IF_ERROR(
        check_proj(fn, e, "up", loc.up, shape.gate_up_type, gate_bytes, limits));
    MOEPOOL_RETURN_IF_ERROR(
        check_proj(fn, e, "down", loc.down, shape.down_type, down_bytes, limits));
  }
  if (tile != 0) {
    // Tiles are workgroups along y: at most n_pairs / 1 of them in the worst case.
    const uint64_t max_tiles = std::min<uint64_t>(n_pairs, experts.size() + n_pairs / tile);
    if (max_tiles > limits.max_group_count_y) {
      return InvalidArgument(f + ": up to " + str(max_tiles) + " tiles exceed the device's " +
                             str(limits.max_group_count_y) + " workgroups; split the batch");
    }
  } else if (n_pairs > limits.max_group_count_y) {
    return InvalidArgument(f + ": " + str(n_pairs) + " routed pairs exceed the device's " +
                           str(limits.max_group_count_y) + " workgroups");
  }
  return static_cast<uint32_t>(n_tokens);
}

}  // namespace moepool::kernels
