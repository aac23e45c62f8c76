// `moepool-bench kernels`: the command line (CLI11, its exceptions stay here) and the run.
#include "tools/bench/kernels_bench.h"

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "tools/bench/kernels_bench_cpu.h"
#include "tools/bench/kernels_bench_gpu.h"
#include "tools/bench/kernels_bench_report.h"
#include "tools/bench/kernels_bench_synth.h"

namespace moepool::bench {
namespace {

struct Parsed {
  KernelsBenchOptions options;
  bool exit_now = false;
  int exit_code = 0;
};

Parsed parse(int argc, char** argv) {
  Parsed out;
  KernelsBenchOptions& o = out.options;
  CLI::App app{
      "moepool-bench kernels: throughput of the Vulkan MoE kernels (kernels/moe_gpu.h) on a "
      "synthetic layer. All experts of the layer are made resident in device-local buffers "
      "('segments', each at most min(maxStorageBufferRange, maxMemoryAllocationSize, "
      "--segment-mib)) at the offsets a pool would use (each expert's gate, up, down in one "
      "4 KiB-aligned slot), filled with random but valid blocks (finite f16 scales of "
      "sensible magnitude, random quants) through a staging buffer. GPU time comes from "
      "timestamp queries around each call (MoeGpu::time_decode/time_prefill, one repetition "
      "per call), median of --reps calls after --warmup calls.\n"
      "decode: each call gets fresh random routing (distinct top-k per token, none of the "
      "previous call's experts, so the GPU's L2 cache does not serve it the previous call's "
      "weights); weight bytes = the distinct experts' gate+up+down; GB/s and tokens/s.\n"
      "prefill: each token count runs every tile width on the same routings, interleaved "
      "call by call; weight bytes = every distinct expert once per call; tokens/s, GB/s, "
      "ms and the speed-up over tile 32.\n"
      "read ceiling (decode rows, unless --no-ceiling): after each decode call, a trivial "
      "streaming-read kernel (16-byte loads, XOR-reduced) reads the same call's distinct "
      "experts' gate, up and down byte ranges in the same segments, once; its median GPU time "
      "gives 'ceil GB/s' and the decode's GB/s as '%ceil' of it. 'ceil2' reads the same bytes "
      "in two dispatches as the decode kernels split them (gate+up, then down), each with its "
      "own ramp-up and tail. Before each timed read it reads other experts untimed "
      "(--ceiling-scrub-mib; none of this call's or the next call's), so the L2 cache does "
      "not serve it what the decode call just read.\n"
      "Prints a table (device name, driver and deviceUUID first) and optionally JSON. Exit "
      "status: 0 when everything ran, 1 on any error, 2 on a usage error.",
      "moepool-bench kernels"};
  std::vector<std::string> types{"q4_K"};
  bool small = false;
  app.add_option("--shape", o.shapes,
                 "layer shapes, comma-separated: deepseek (256 experts, top-8, n_embd 7168, "
                 "n_ff 2048), qwen3 (Qwen3-30B-A3B: 128 experts, top-8, n_embd 2048, n_ff "
                 "768), small (16 experts, top-4, n_embd 256, n_ff 256: for lavapipe)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_flag("--small", small,
               "a smoke run in seconds on lavapipe: --shape small, --prefill-tokens 128 and "
               "--warmup 1 unless given");
  app.add_option("--type", types,
                 "weight types, comma-separated: q4_k, q8_0, f16 (gate, up and down alike)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--experts", o.experts,
                 "experts resident per layer instead of the shape's own count (at least "
                 "top-k; routing draws from these); to fit a small device")
      ->capture_default_str();
  app.add_option("--tokens", o.decode_tokens, "decode batch sizes, comma-separated (1..8)")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--prefill-tokens", o.prefill_tokens, "prefill token counts, comma-separated")
      ->delimiter(',')
      ->capture_default_str();
  app.add_option("--tiles", o.tiles, "prefill tile widths (routed pairs per tile): 32, 64, 128")
      ->delimiter(',')
      ->check(CLI::IsMember({32u, 64u, 128u}))
      ->capture_default_str();
  app.add_option("--reps", o.reps, "timed calls per configuration (median reported)")
      ->check(CLI::Range(1u, 100000u))
      ->capture_default_str();
  app.add_option("--warmup", o.warmup, "untimed calls before the timed ones")
      ->capture_default_str();
  app.add_option("--skew", o.skew,
                 "prefill routing: Zipf exponent over a random permutation of the experts "
                 "(0 = uniform)")
      ->check(CLI::Range(0.0, 10.0))
      ->capture_default_str();
  app.add_option("--seed", o.seed, "seed of the expert bytes, activations and routings")
      ->capture_default_str();
  app.add_option("--device", o.device,
                 "Vulkan physical device index (-1: first discrete GPU, else integrated, else "
                 "the first; MOEPOOL_VK_DEVICE overrides -1)")
      ->capture_default_str();
  app.add_option("--segment-mib", o.segment_mib,
                 "largest segment in MiB (also capped by the device's maxStorageBufferRange "
                 "and maxMemoryAllocationSize)")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 20))
      ->capture_default_str();
  app.add_option("--peak-gbs", o.peak_gbs,
                 "memory bandwidth peak in GB/s for a '% of peak' column (e.g. 3350 for an "
                 "H100 SXM's HBM3); 0 leaves it out")
      ->check(CLI::Range(0.0, 1e6))
      ->capture_default_str();
  bool no_decode = false, no_prefill = false, cpu_only = false;
  app.add_flag("--no-decode", no_decode, "skip the decode measurements");
  app.add_flag("--no-prefill", no_prefill, "skip the prefill measurements");
  app.add_flag("--cpu", o.cpu,
               "also time the CPU Q4_K decode fast path (AVX2 where the CPU has it, and "
               "scalar) and the plain CPU reference (1 token, at most 5 calls) on the same "
               "layer in host memory, one thread (use with --shape qwen3)");
  app.add_flag("--cpu-only", cpu_only, "only the CPU measurements (no Vulkan needed)");
  app.add_option("--json", o.json_path, "also write the results as one JSON object to FILE");
  app.add_option("--fill-threads", o.fill_threads,
                 "threads generating expert bytes (0: one per CPU)")
      ->capture_default_str();
  app.add_option("--decode-workgroup", o.decode_workgroup,
                 "MoeGpuTuning: threads per decode workgroup (0: the kernels' default, 128)")
      ->capture_default_str();
  app.add_option("--decode-rows", o.decode_rows,
                 "MoeGpuTuning: weight rows per decode workgroup (0: workgroup / subgroup)")
      ->capture_default_str();
  app.add_option("--prefill-rows", o.prefill_rows,
                 "MoeGpuTuning: weight rows per prefill workgroup, 32 or 64 (0: default, 64)")
      ->check(CLI::IsMember({0u, 32u, 64u}))
      ->capture_default_str();
  app.add_option("--decode-rows-at-once", o.decode_rows_at_once,
                 "MoeGpuTuning: rows one subgroup computes at once in decode gate+up, 1..4")
      ->capture_default_str();
  app.add_option("--decode-down-rows-at-once", o.decode_down_rows_at_once,
                 "MoeGpuTuning: rows one subgroup computes at once in decode down, 1..8")
      ->capture_default_str();
  app.add_option("--prefill-wide-rows", o.prefill_wide_rows,
                 "MoeGpuTuning: weight rows per prefill workgroup of 128-pair tiles, 32 or 64")
      ->check(CLI::IsMember({0u, 32u, 64u}))
      ->capture_default_str();
  app.add_option("--decode-activations", o.decode_activations,
                 "MoeGpuTuning: activations of the Q4_K decode kernels: f32 (exact), int8 (x "
                 "and h quantized per 32 values, integer dot products; needs "
                 "shaderIntegerDotProduct) or default (int8 where the device has it)")
      ->check(CLI::IsMember({"default", "f32", "int8"}))
      ->capture_default_str();
  app.add_option("--decode-x-shared", o.decode_x_shared,
                 "MoeGpuTuning: the int8 gate+up kernel copies x (uploaded quantized) into "
                 "shared memory first (on) or reads it from global memory at every step (off); "
                 "default: the kernels' choice")
      ->check(CLI::IsMember({"default", "on", "off"}))
      ->capture_default_str();
  bool no_ceiling = false;
  app.add_flag("--no-ceiling", no_ceiling, "skip the read ceiling beside the decode rows");
  app.add_option("--ceiling-workgroup", o.ceiling_workgroup,
                 "read ceiling: threads per workgroup (specialization constant)")
      ->check(CLI::Range(1u, 1024u))
      ->capture_default_str();
  app.add_option("--ceiling-chunk-kib", o.ceiling_chunk_kib,
                 "read ceiling: KiB each workgroup reads of one range (specialization constant)")
      ->check(CLI::Range(1u, 65536u))
      ->capture_default_str();
  app.add_option("--ceiling-unroll", o.ceiling_unroll,
                 "read ceiling: 16-byte loads each thread keeps in flight, 1..16 "
                 "(specialization constant)")
      ->check(CLI::Range(1u, 16u))
      ->capture_default_str();
  app.add_option("--ceiling-scrub-mib", o.ceiling_scrub_mib,
                 "read ceiling: MiB of other experts read untimed before each timed read, to "
                 "evict the call's experts from the L2 cache (0: none)")
      ->check(CLI::Range(uint64_t{0}, uint64_t{1} << 20))
      ->capture_default_str();
  app.add_flag("--step-times", o.step_times,
               "print each dispatch's GPU time (median over the timed calls) to stderr");
  try {
    app.parse(argc, argv);
    if (small) {
      if (!app.count("--shape")) o.shapes = {"small"};
      if (!app.count("--prefill-tokens")) o.prefill_tokens = {128};
      if (!app.count("--warmup")) o.warmup = 1;
    }
    for (const std::string& s : o.shapes)
      if (!layer_shape(s).ok())
        throw CLI::ValidationError("--shape", layer_shape(s).status().message());
    o.types.clear();
    for (const std::string& t : types) {
      auto traits = ggml_type_by_name(t);
      if (!traits || (traits->type != GgmlType::Q4_K && traits->type != GgmlType::Q8_0 &&
                      traits->type != GgmlType::F16))
        throw CLI::ValidationError("--type", "'" + t + "' is not q4_k, q8_0 or f16");
      o.types.push_back(traits->type);
    }
    o.decode = !no_decode;
    o.ceiling = !no_ceiling;
    o.prefill = !no_prefill;
    if (cpu_only) {
      o.cpu = true;
      o.gpu = false;
    }
  } catch (const CLI::ParseError& e) {
    out.exit_now = true;
    out.exit_code = app.exit(e);
    if (out.exit_code != 0) out.exit_code = 2;
  }
  return out;
}

Status write_file(const std::string& path, const std::string& text) {
  FILE* f = fopen(path.c_str(), "w");
  if (!f) return Status::FromErrno("open " + path, errno);
  size_t n = fwrite(text.data(), 1, text.size(), f);
  int err = errno;
  if (fclose(f) != 0 || n != text.size())
    return Status::FromErrno("write " + path, err ? err : EIO);
  return Status::Ok();
}

}  // namespace

int run_kernels_bench(int argc, char** argv) {
  Parsed parsed = parse(argc, argv);
  if (parsed.exit_now) return parsed.exit_code;
  const KernelsBenchOptions& o = parsed.options;
  KernelsReport report;
  report.peak_gbs = o.peak_gbs;
  if (o.gpu) {
    Status st = run_gpu_kernels(o, &report);
    if (!st.ok()) report.errors.push_back(st.to_string());
  }
  if (o.cpu) {
    Status st = run_cpu_kernels(o, &report);
    if (!st.ok()) report.errors.push_back(st.to_string());
  }
  print_kernels_table(stdout, report);
  if (!o.json_path.empty()) {
    Status st = write_file(o.json_path, kernels_json(report) + "\n");
    if (!st.ok()) {
      fprintf(stderr, "moepool-bench kernels: %s\n", st.to_string().c_str());
      return 1;
    }
  }
  return report.errors.empty() ? 0 : 1;
}

}  // namespace moepool::bench
