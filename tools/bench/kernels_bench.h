// `moepool-bench kernels`: throughput of the Vulkan MoE kernels (kernels/moe_gpu.h) on a
// synthetic layer resident in device-local segments laid out as a pool lays out slots:
// decode (1..8 tokens, fresh routing each repetition) and prefill (many tokens, tiles of
// 32/64/128 pairs), in weight bytes per second and tokens per second, GPU time from
// timestamp queries; beside each decode row, the measured read ceiling on the same calls'
// expert bytes (kernels_bench_ceiling.h). Optionally (--cpu) the CPU Q4_K fast path against
// the CPU reference.
// Thread safety: run_kernels_bench is called once, from main's thread.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/ggml_types.h"

namespace moepool::bench {

struct KernelsBenchOptions {
  std::vector<std::string> shapes{"deepseek", "qwen3"};
  std::vector<GgmlType> types{GgmlType::Q4_K};
  uint32_t experts = 0;  // 0: the shape's own expert count
  std::vector<uint32_t> decode_tokens{1, 2, 4, 8};
  std::vector<uint32_t> prefill_tokens{512, 2048};
  std::vector<uint32_t> tiles{32, 64, 128};
  uint32_t reps = 20;
  uint32_t warmup = 3;
  double skew = 0;  // Zipf exponent of prefill routing; 0 = uniform
  uint64_t seed = 1;
  int device = -1;
  uint64_t segment_mib = 1024;
  double peak_gbs = 0;  // HBM peak for the "% of peak" column; 0 = not shown
  bool decode = true;
  bool prefill = true;
  bool gpu = true;
  bool cpu = false;
  std::string json_path;
  uint32_t fill_threads = 0;  // 0: hardware concurrency
  // MoeGpuTuning (0: the kernels' defaults).
  uint32_t decode_workgroup = 0;
  uint32_t decode_rows = 0;
  uint32_t prefill_rows = 0;
  uint32_t decode_rows_at_once = 0;            // MoeGpuTuning::decode_rows_at_once
  uint32_t decode_down_rows_at_once = 0;       // MoeGpuTuning::decode_down_rows_at_once
  uint32_t prefill_wide_rows = 0;              // MoeGpuTuning::prefill_wide_rows
  std::string decode_activations = "default";  // MoeGpuTuning::decode_activations: default|f32|int8
  std::string decode_x_shared = "default";     // MoeGpuTuning::decode_x_shared: default|on|off
  bool step_times = false;                     // print each dispatch's GPU time (stderr)
  // The read ceiling beside each decode row (kernels/gpu_read_ceiling.h).
  bool ceiling = true;
  uint32_t ceiling_workgroup = 256;  // threads per workgroup
  uint32_t ceiling_chunk_kib = 64;   // KiB per workgroup
  uint32_t ceiling_unroll = 4;       // 16-byte loads in flight per thread
  uint64_t ceiling_scrub_mib = 256;  // other experts read untimed before each ceiling read
};

// Parses the subcommand's arguments (argv[0] is "kernels") and runs it. Returns the process
// exit code: 0 when every measurement ran, 1 on an error (printed), 2 on a usage error.
int run_kernels_bench(int argc, char** argv);

}  // namespace moepool::bench
