// One routed MoE FFN for one decode token on the CPU, on a Qwen3-30B-A3B expert shape
// (n_embd 2048, n_ff 768, top_k 8, 128 experts, all Q4_K with random valid blocks):
// moe_ffn_reference vs moe_ffn_q4k_cpu's scalar and AVX2 paths, one thread each.
// Reports weight_bytes_per_s: the bytes of the 8 routed experts' Q4_K weights per second.
// "cold": each iteration routes to the next 8 of the 128 experts (340 MiB cycled, more than
// any cache, as in decoding); "hot": the same 8 experts every iteration (21 MiB).
#include <benchmark/benchmark.h>

#include <cstring>
#include <random>
#include <vector>

#include "kernels/dequant.h"
#include "kernels/moe_reference.h"
#include "kernels/q4k_cpu.h"

namespace moepool::kernels {
namespace {

constexpr uint32_t kEmbd = 2048, kFf = 768, kTopK = 8, kExperts = 128;
constexpr size_t kProjBytes = size_t{kFf} * kEmbd / kQ4_KBlockSize * kQ4_KBlockBytes;
constexpr size_t kExpertBytes = 3 * kProjBytes;  // gate, up, down are the same size here

uint16_t to_half(float v) {  // a normal half value, truncated
  uint32_t b;
  std::memcpy(&b, &v, 4);
  const int exp = static_cast<int>((b >> 23) & 0xff) - 127 + 15;
  return static_cast<uint16_t>(((b >> 16) & 0x8000u) | (static_cast<uint32_t>(exp) << 10) |
                               ((b >> 13) & 0x3ffu));
}

// 128 experts of random Q4_K blocks (random scales, mins and nibbles; d, dmin ~ 2^-11).
struct Model {
  std::vector<uint8_t> bytes;
  std::vector<ExpertWeights> experts;
  std::vector<float> x;
};

const Model& model() {
  static const Model m = [] {
    Model m;
    m.bytes.resize(kExpertBytes * kExperts);
    std::mt19937_64 rng(1);
    for (size_t i = 0; i + 8 <= m.bytes.size(); i += 8) {
      const uint64_t v = rng();
      std::memcpy(m.bytes.data() + i, &v, 8);
    }
    std::uniform_real_distribution<float> scale(0.5f / 2048, 2.0f / 2048);
    for (size_t b = 0; b < m.bytes.size() / kQ4_KBlockBytes; ++b) {
      uint8_t* blk = m.bytes.data() + b * kQ4_KBlockBytes;
      const uint16_t d = to_half(scale(rng)), dmin = to_half(scale(rng));
      std::memcpy(blk, &d, 2);
      std::memcpy(blk + 2, &dmin, 2);
    }
    for (uint32_t e = 0; e < kExperts; ++e) {
      const uint8_t* base = m.bytes.data() + e * kExpertBytes;
      m.experts.push_back({{GgmlType::Q4_K, base},
                           {GgmlType::Q4_K, base + kProjBytes},
                           {GgmlType::Q4_K, base + 2 * kProjBytes}});
    }
    std::normal_distribution<float> nd(0.0f, 1.0f);
    m.x.resize(kEmbd);
    for (auto& v : m.x) v = nd(rng);
    return m;
  }();
  return m;
}

enum Kind { kReference, kScalar, kAvx2 };

void run(benchmark::State& state, Kind kind) {
  const bool cold = state.range(0) == 0;
  if (kind == kAvx2 && !cpu_has_avx2()) {
    state.SkipWithError("this CPU has no AVX2/FMA");
    return;
  }
  const Model& m = model();
  const MoeShape shape{kEmbd, kFf, kTopK};
  const std::vector<float> w = {0.3f, 0.2f, 0.15f, 0.1f, 0.1f, 0.05f, 0.05f, 0.05f};
  std::vector<uint32_t> ids(kTopK);
  std::vector<float> out(kEmbd);
  uint32_t first = 0;
  for (auto _ : state) {
    for (uint32_t k = 0; k < kTopK; ++k) ids[k] = (first + k) % kExperts;
    if (cold) first = (first + kTopK) % kExperts;
    const Status st =
        kind == kReference
            ? moe_ffn_reference(shape, m.experts, m.x, ids, w, out)
            : moe_ffn_q4k_cpu(shape, m.experts, m.x, ids, w, out,
                              kind == kScalar ? CpuPath::kScalar : CpuPath::kAvx2);
    if (!st.ok()) {
      state.SkipWithError(st.to_string().c_str());
      return;
    }
    benchmark::DoNotOptimize(out.data());
    benchmark::ClobberMemory();
  }
  const double bytes = double{kTopK} * kExpertBytes;
  state.counters["weight_bytes_per_s"] =
      benchmark::Counter(bytes, benchmark::Counter::kIsIterationInvariantRate);
  state.SetLabel(cold ? "cold" : "hot");
}

void BM_Reference(benchmark::State& s) { run(s, kReference); }
void BM_Scalar(benchmark::State& s) { run(s, kScalar); }
void BM_Avx2(benchmark::State& s) { run(s, kAvx2); }

BENCHMARK(BM_Reference)->Arg(0)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Scalar)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);
BENCHMARK(BM_Avx2)->Arg(0)->Arg(1)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace moepool::kernels

BENCHMARK_MAIN();
