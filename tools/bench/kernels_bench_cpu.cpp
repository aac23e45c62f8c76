// The CPU half of `moepool-bench kernels --cpu` (see kernels_bench_cpu.h).
#include "tools/bench/kernels_bench_cpu.h"

#if __has_include("kernels/q4k_cpu.h")

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <functional>
#include <thread>

#include "kernels/moe_reference.h"
#include "kernels/q4k_cpu.h"
#include "tools/bench/kernels_bench_synth.h"

namespace moepool::bench {
namespace {

using Clock = std::chrono::steady_clock;

// Times `call` over `warmup` + `reps` routings; returns the first error.
Status time_calls(uint32_t warmup, uint32_t reps, const std::vector<Routing>& routes,
                  uint64_t expert_bytes, const std::function<Status(const Routing&)>& call,
                  KernelRow* row) {
  std::vector<double> secs;
  double distinct = 0;
  for (uint32_t i = 0; i < warmup + reps; ++i) {
    const Routing& r = routes[i % routes.size()];
    auto t0 = Clock::now();
    Status st = call(r);
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    if (!st.ok()) return st;
    if (i < warmup) continue;
    secs.push_back(s);
    distinct += r.distinct_experts;
  }
  row->reps = static_cast<uint32_t>(secs.size());
  row->median_s = median_of(secs);
  double sum = 0;
  for (double s : secs) sum += s;
  row->mean_s = secs.empty() ? 0 : sum / secs.size();
  row->min_s = secs.empty() ? 0 : *std::min_element(secs.begin(), secs.end());
  row->distinct_experts = secs.empty() ? 0 : distinct / secs.size();
  row->weight_bytes = row->distinct_experts * expert_bytes;
  return Status::Ok();
}

}  // namespace

Status run_cpu_kernels(const KernelsBenchOptions& o, KernelsReport* report) {
  report->cpu_path = kernels::cpu_auto_path_name();
  const uint32_t threads =
      o.fill_threads ? o.fill_threads : std::max(1u, std::thread::hardware_concurrency());
  for (const std::string& name : o.shapes) {
    auto shape = layer_shape(name);
    if (!shape.ok()) return shape.status();
    LayerShape s = *shape;
    if (o.experts) s.n_experts = std::max(o.experts, s.top_k);
    auto layout = slot_layout(s, GgmlType::Q4_K, ~uint64_t{0});
    if (!layout.ok()) {
      report->errors.push_back("cpu " + s.name + ": " + layout.status().to_string());
      continue;
    }
    fprintf(stderr, "  cpu %s q4_K: %.2f GB of experts in host memory: filling...", s.name.c_str(),
            double(layout->expert_bytes) * s.n_experts / 1e9);
    fflush(stderr);
    // Host copy of the layer, packed expert after expert (no slot padding needed here).
    std::vector<uint8_t> host(layout->expert_bytes * s.n_experts);
    std::vector<kernels::ExpertWeights> experts(s.n_experts);
    for (uint32_t e = 0; e < s.n_experts; ++e) {
      uint8_t* p = host.data() + uint64_t{e} * layout->expert_bytes;
      fill_expert(*layout, o.seed, e, p, threads);
      experts[e].gate = {GgmlType::Q4_K, p};
      experts[e].up = {GgmlType::Q4_K, p + layout->gate_bytes};
      experts[e].down = {GgmlType::Q4_K, p + 2 * layout->gate_bytes};
    }
    fprintf(stderr, " done\n");
    const kernels::MoeShape ms{s.n_embd, s.n_ff, s.top_k};
    for (uint32_t n : o.decode_tokens) {
      if (n == 0) continue;
      const auto routes =
          make_routings(o.warmup + o.reps, n, s.top_k, s.n_experts, 0, true, o.seed + n);
      const std::vector<float> x = random_activations(uint64_t{n} * s.n_embd, o.seed + 100 + n);
      std::vector<float> out(x.size());
      struct Variant {
        const char* kernel;
        std::function<Status(const Routing&)> call;
        uint32_t warmup, reps;
      };
      std::vector<Variant> variants;
      auto fast = [&](kernels::CpuPath path) {
        return [&, path](const Routing& r) {
          return kernels::moe_ffn_q4k_cpu(ms, experts, x, r.ids, r.weights, out, path);
        };
      };
      if (kernels::cpu_has_avx2())
        variants.push_back({"cpu_avx2", fast(kernels::CpuPath::kAvx2), o.warmup, o.reps});
      variants.push_back({"cpu_scalar", fast(kernels::CpuPath::kScalar), o.warmup, o.reps});
      if (n == 1)
        variants.push_back({"cpu_reference",
                            [&](const Routing& r) {
                              return kernels::moe_ffn_reference(ms, experts, x, r.ids, r.weights,
                                                                out);
                            },
                            std::min(o.warmup, 1u), std::min(o.reps, kCpuReferenceReps)});
      for (const Variant& v : variants) {
        KernelRow row;
        row.kernel = v.kernel;
        row.shape = s.name;
        row.type = "q4_K";
        row.n_experts = s.n_experts;
        row.top_k = s.top_k;
        row.n_embd = s.n_embd;
        row.n_ff = s.n_ff;
        row.tokens = n;
        Status st = time_calls(v.warmup, v.reps, routes, layout->expert_bytes, v.call, &row);
        if (!st.ok()) {
          report->errors.push_back(std::string(v.kernel) + " " + s.name + " " + std::to_string(n) +
                                   " tokens: " + st.to_string());
          continue;
        }
        report->rows.push_back(row);
      }
    }
  }
  return Status::Ok();
}

}  // namespace moepool::bench

#else  // kernels/q4k_cpu.h not in this tree yet

namespace moepool::bench {

Status run_cpu_kernels(const KernelsBenchOptions&, KernelsReport*) {
  return Unavailable("built without the CPU Q4_K fast path (kernels/q4k_cpu.h)");
}

}  // namespace moepool::bench

#endif
