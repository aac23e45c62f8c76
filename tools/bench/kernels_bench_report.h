// The figures `moepool-bench kernels` measures and how it prints them: a table per kernel
// on a FILE and the same rows as one JSON object (--json FILE).
// Thread safety: plain data and pure functions.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

namespace moepool::bench {

struct DeviceFacts {
  std::string name, driver, uuid, api = "vulkan";
  uint32_t subgroup_size = 0;
  uint64_t segment_bytes = 0;  // the largest segment the bench allocated
  std::string tuning;          // "decode_workgroup=0 decode_rows=0 prefill_rows=0" (0: default)
  std::string ceiling;         // the read ceiling's launch shape, empty when not measured
};

// One measured configuration. GPU time per call: median and mean over `reps` calls.
struct KernelRow {
  std::string kernel;  // "decode", "prefill", "cpu_avx2", "cpu_scalar", "cpu_reference"
  std::string shape;   // "deepseek", ...
  std::string type;    // "q4_K", "q8_0", "f16"
  uint32_t n_experts = 0, top_k = 0, n_embd = 0, n_ff = 0;
  uint32_t tokens = 0;
  uint32_t tile = 0;            // prefill only
  uint32_t reps = 0;
  double distinct_experts = 0;  // mean experts one call reads
  double weight_bytes = 0;      // mean bytes of the distinct experts one call reads
  double median_s = 0, mean_s = 0, min_s = 0;
  // decode: the read ceiling on the same calls' expert ranges (0: not measured): median GPU
  // seconds of the streaming read and the mean bytes it read per call.
  double ceiling_median_s = 0, ceiling_bytes = 0;
  // The same bytes as two reads, gate+up then down (the kernels' split): median GPU seconds.
  double ceiling_split_median_s = 0;
  // From the median: tokens per second and weight bytes per second.
  double tokens_per_s() const { return median_s > 0 ? tokens / median_s : 0; }
  double bytes_per_s() const { return median_s > 0 ? weight_bytes / median_s : 0; }
  double ceiling_bytes_per_s() const {
    return ceiling_median_s > 0 ? ceiling_bytes / ceiling_median_s : 0;
  }
  double ceiling_split_bytes_per_s() const {
    return ceiling_split_median_s > 0 ? ceiling_bytes / ceiling_split_median_s : 0;
  }
  // The kernel's bytes per second as a percentage of the ceiling's (0: no ceiling).
  double pct_of_ceiling() const {
    return ceiling_bytes_per_s() > 0 ? 100.0 * bytes_per_s() / ceiling_bytes_per_s() : 0;
  }
  double pct_of_split_ceiling() const {
    const double c = ceiling_split_bytes_per_s();
    return c > 0 ? 100.0 * bytes_per_s() / c : 0;
  }
};

struct KernelsReport {
  bool has_device = false;
  DeviceFacts device;
  std::string cpu_path;  // "avx2" / "scalar" when CPU rows exist
  double peak_gbs = 0;
  std::vector<KernelRow> rows;
  std::vector<std::string> errors;
};

// Prints the device, then a decode table, a prefill table (tiles of one configuration side
// by side: ms, tokens/s, GB/s, speed-up over tile 32) and a CPU table, for the rows present.
void print_kernels_table(FILE* out, const KernelsReport& report);

// Returns the report as one JSON object: {"device": {...}, "peak_gbs", "rows": [{...}],
// "errors": [...]}; each row carries median/mean/min seconds, tokens_per_s and gb_per_s, and
// a decode row with a read ceiling also ceiling_median_s, ceiling_bytes, ceiling_gb_per_s and
// pct_of_ceiling (the device object then has "ceiling": its launch shape).
std::string kernels_json(const KernelsReport& report);

// Returns the median of `v` (0 for none).
double median_of(std::vector<double> v);

}  // namespace moepool::bench
