// The CPU Q4_K fast path (moe_ffn_q4k_cpu): scalar and AVX2 against moe_ffn_reference by
// NMSE on random valid Q4_K experts, the two paths against each other bit for bit, and the
// errors it must refuse.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/dequant.h"
#include "q4_k_scales.h"
#include "kernels/moe_reference.h"
#include "kernels/q4k_cpu.h"

namespace moepool::kernels {
namespace {

// NMSE bound against the double-precision reference. The fast path quantizes each activation
// row (x, then h = silu(gate)*up) to int8 per 256 values, as ggml's CPU Q4_K path does, and
// that is nearly all its error. Measured over 10 seeds of each shape below (zero-centred Q4_K
// weights, N(0,1) activations): NMSE 3e-4 typical, 8.6e-4 at most without outliers (the
// heavy-tailed h dominates: max|h|/127 is a coarse step); with this test's 8x outliers in x
// (one every 97 values, as real hidden states have) 1e-3 typical, 1.7e-3 at most. 5e-3 leaves
// a 3x margin and still fails a real bug (a wrong scale, min, nibble or sub-block order gives
// NMSE of 1e-2 to 1).
constexpr double kMaxNmse = 5e-3;

uint16_t to_half(float v) {  // v a normal half value, truncated (fine for scales)
  uint32_t b;
  std::memcpy(&b, &v, 4);
  const uint32_t sign = (b >> 16) & 0x8000u;
  const int exp = static_cast<int>((b >> 23) & 0xff) - 127 + 15;
  return static_cast<uint16_t>(sign | (static_cast<uint32_t>(exp) << 10) | ((b >> 13) & 0x3ffu));
}

// Random Q4_K bytes for a [rows][cols] matrix, d a positive half around 2^-11 (the magnitude
// real Q4_K experts have). kRandom: every other byte random (scales, mins and nibbles
// independent: weights with a large common offset, every bit pattern exercised). kCentered:
// like a real quantized matrix of zero-mean weights: each sub-block's min is about 7.5 times
// its scale (min_j ~ scale_j, dmin ~ 7.5 d), so the weights are spread around zero.
enum class Blocks { kRandom, kCentered };

std::vector<uint8_t> random_q4k(uint32_t rows, uint32_t cols, std::mt19937& rng, Blocks kind) {
  const size_t blocks = size_t{rows} * cols / kQ4_KBlockSize;
  std::vector<uint8_t> b(blocks * kQ4_KBlockBytes);
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  std::uniform_real_distribution<float> scale(0.5f / 2048, 2.0f / 2048);
  std::uniform_int_distribution<int> six(1, 63), jitter(-3, 3);
  for (size_t i = 0; i < blocks; ++i) {
    uint8_t* blk = b.data() + i * kQ4_KBlockBytes;
    const float d = scale(rng);
    const uint16_t dh = to_half(d);
    const uint16_t dminh = to_half(kind == Blocks::kCentered ? 7.5f * d : scale(rng));
    std::memcpy(blk, &dh, 2);
    std::memcpy(blk + 2, &dminh, 2);
    if (kind == Blocks::kCentered) {
      uint8_t sc[8], m[8];
      for (int j = 0; j < 8; ++j) {
        sc[j] = static_cast<uint8_t>(six(rng));
        m[j] = static_cast<uint8_t>(std::clamp(sc[j] + jitter(rng), 0, 63));
      }
      pack_q4_k_scales(sc, m, blk + 4);
    }
  }
  return b;
}

struct Model {
  MoeShape shape;
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<ExpertWeights> experts;
};

Model make_model(uint32_t embd, uint32_t ff, uint32_t top_k, uint32_t n_experts, uint32_t seed,
                 Blocks kind = Blocks::kCentered) {
  std::mt19937 rng(seed);
  Model m{{embd, ff, top_k}, {}, {}};
  for (uint32_t e = 0; e < n_experts; ++e) {
    m.bytes.push_back(random_q4k(ff, embd, rng, kind));
    m.bytes.push_back(random_q4k(ff, embd, rng, kind));
    m.bytes.push_back(random_q4k(embd, ff, rng, kind));
  }
  for (uint32_t e = 0; e < n_experts; ++e) {
    m.experts.push_back({{GgmlType::Q4_K, m.bytes[3 * e].data()},
                         {GgmlType::Q4_K, m.bytes[3 * e + 1].data()},
                         {GgmlType::Q4_K, m.bytes[3 * e + 2].data()}});
  }
  return m;
}

struct Batch {
  std::vector<float> x, w;
  std::vector<uint32_t> ids;
};

// n_tokens tokens of N(0,1) activations (a few outliers of 8x), distinct random experts per
// token, and odd router weights: negative, zero, tiny, large, unnormalized.
Batch make_batch(const Model& m, uint32_t n_tokens, uint32_t seed, bool outliers = true) {
  std::mt19937 rng(seed);
  Batch b;
  std::normal_distribution<float> nd(0.0f, 1.0f);
  b.x.resize(size_t{n_tokens} * m.shape.n_embd);
  for (auto& v : b.x) v = nd(rng);
  if (outliers) {
    for (size_t i = 0; i < b.x.size(); i += 97) b.x[i] *= 8.0f;
  }
  const float odd[] = {0.6f, -0.3f, 0.0f, 1e-6f, 3.5f, 0.125f, -1.75f, 0.01f};
  const uint32_t n_experts = static_cast<uint32_t>(m.experts.size());
  for (uint32_t t = 0; t < n_tokens; ++t) {
    std::vector<uint32_t> pick(n_experts);
    for (uint32_t e = 0; e < n_experts; ++e) pick[e] = e;
    std::shuffle(pick.begin(), pick.end(), rng);
    for (uint32_t k = 0; k < m.shape.top_k; ++k) {
      b.ids.push_back(pick[k]);
      b.w.push_back(odd[(t + k) % 8]);
    }
  }
  return b;
}

double nmse(const std::vector<float>& a, const std::vector<float>& ref) {
  double num = 0, den = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    num += (double{a[i]} - ref[i]) * (double{a[i]} - ref[i]);
    den += double{ref[i]} * ref[i];
  }
  return den > 0 ? num / den : num;
}

std::vector<CpuPath> paths() {
  std::vector<CpuPath> p = {CpuPath::kScalar, CpuPath::kAuto};
  if (cpu_has_avx2()) p.push_back(CpuPath::kAvx2);
  return p;
}

const char* path_name(CpuPath p) {
  return p == CpuPath::kScalar ? "scalar" : p == CpuPath::kAvx2 ? "avx2" : "auto";
}

struct Case {
  uint32_t embd, ff, top_k, n_experts, n_tokens;
};

TEST(KernelsCpuQ4K, MatchesReferenceWithinNmse) {
  const Case cases[] = {{512, 256, 2, 4, 1},   {512, 512, 3, 6, 3},    {1024, 768, 4, 8, 1},
                        {1024, 256, 8, 10, 3}, {2048, 768, 8, 12, 1},  {1536, 512, 6, 8, 3},
                        {2048, 256, 2, 3, 3}};
  uint32_t seed = 100;
  for (const Case& c : cases) {
    const Model m = make_model(c.embd, c.ff, c.top_k, c.n_experts, ++seed);
    const Batch b = make_batch(m, c.n_tokens, ++seed);
    std::vector<float> ref(b.x.size());
    ASSERT_TRUE(moe_ffn_reference(m.shape, m.experts, b.x, b.ids, b.w, ref).ok());
    for (CpuPath p : paths()) {
      std::vector<float> out(b.x.size(), 7.0f);
      const Status st = moe_ffn_q4k_cpu(m.shape, m.experts, b.x, b.ids, b.w, out, p);
      ASSERT_TRUE(st.ok()) << st.to_string();
      const double e = nmse(out, ref);
      std::printf("embd %u ff %u top_k %u tokens %u %s: NMSE %.3g\n", c.embd, c.ff, c.top_k,
                  c.n_tokens, path_name(p), e);
      EXPECT_LT(e, kMaxNmse) << "embd " << c.embd << " ff " << c.ff << " top_k " << c.top_k
                             << " tokens " << c.n_tokens << " path " << path_name(p);
    }
  }
}

TEST(KernelsCpuQ4K, ScalarAndAvx2AgreeBitForBit) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2/FMA; only the scalar path runs";
  const Case cases[] = {{512, 256, 2, 4, 3}, {2048, 768, 8, 10, 1}, {1024, 512, 5, 7, 3}};
  uint32_t seed = 200;
  for (Blocks kind : {Blocks::kCentered, Blocks::kRandom}) {
    for (const Case& c : cases) {
      const Model m = make_model(c.embd, c.ff, c.top_k, c.n_experts, ++seed, kind);
      const Batch b = make_batch(m, c.n_tokens, ++seed);
      std::vector<float> scalar(b.x.size()), avx2(b.x.size());
      ASSERT_TRUE(
          moe_ffn_q4k_cpu(m.shape, m.experts, b.x, b.ids, b.w, scalar, CpuPath::kScalar).ok());
      ASSERT_TRUE(moe_ffn_q4k_cpu(m.shape, m.experts, b.x, b.ids, b.w, avx2, CpuPath::kAvx2).ok());
      for (size_t i = 0; i < scalar.size(); ++i) {
        ASSERT_EQ(std::memcmp(&scalar[i], &avx2[i], 4), 0)
            << "element " << i << ": " << scalar[i] << " vs " << avx2[i];
      }
    }
  }
}

TEST(KernelsCpuQ4K, ZeroInputGivesZero) {
  const Model m = make_model(512, 256, 2, 3, 9);
  const std::vector<float> x(512, 0.0f), w = {0.5f, 0.5f};
  const std::vector<uint32_t> ids = {0, 2};
  for (CpuPath p : paths()) {
    std::vector<float> out(512, 1.0f);
    ASSERT_TRUE(moe_ffn_q4k_cpu(m.shape, m.experts, x, ids, w, out, p).ok());
    for (float v : out) ASSERT_EQ(v, 0.0f) << path_name(p);
  }
}

TEST(KernelsCpuQ4K, Avx2PathNeedsAvx2) {
  const Model m = make_model(256, 256, 1, 1, 3);
  const std::vector<float> x(256, 1.0f), w = {1.0f};
  std::vector<float> out(256);
  const Status st = moe_ffn_q4k_cpu(m.shape, m.experts, x, std::vector<uint32_t>{0}, w, out,
                                    CpuPath::kAvx2);
  if (cpu_has_avx2()) {
    EXPECT_TRUE(st.ok()) << st.to_string();
    EXPECT_STREQ(cpu_auto_path_name(), "avx2");
  } else {
    EXPECT_EQ(st.code(), Code::kFailedPrecondition) << st.to_string();
    EXPECT_STREQ(cpu_auto_path_name(), "scalar");
  }
}

TEST(KernelsCpuQ4K, RefusesBadInput) {
  const Model m = make_model(256, 256, 1, 2, 5);
  const std::vector<float> x(256, 1.0f), w = {1.0f};
  const std::vector<uint32_t> id0 = {0};
  std::vector<float> out(256);

  Status st = moe_ffn_q4k_cpu(m.shape, m.experts, x, std::vector<uint32_t>{2}, w, out);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("ids[0] = 2"), std::string::npos) << st.message();

  const char* names[] = {"gate", "up", "down"};
  for (int proj = 0; proj < 3; ++proj) {
    std::vector<ExpertWeights> ex = m.experts;
    ProjWeights* p = proj == 0 ? &ex[0].gate : proj == 1 ? &ex[0].up : &ex[0].down;
    p->type = GgmlType::Q8_0;
    st = moe_ffn_q4k_cpu(m.shape, ex, x, id0, w, out);
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_NE(st.message().find(std::string("expert 0 ") + names[proj]), std::string::npos)
        << st.message();
    EXPECT_NE(st.message().find("q8_0"), std::string::npos) << st.message();
    p->type = GgmlType::Q4_K;
    p->data = nullptr;
    st = moe_ffn_q4k_cpu(m.shape, ex, x, id0, w, out);
    EXPECT_NE(st.message().find(names[proj]), std::string::npos) << st.message();
  }

  // Shapes that are not whole Q4_K blocks, and spans of the wrong size.
  std::vector<float> x128(128), out128(128);
  st = moe_ffn_q4k_cpu({128, 256, 1}, m.experts, x128, id0, w, out128);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("256"), std::string::npos) << st.message();
  st = moe_ffn_q4k_cpu({256, 384, 1}, m.experts, x, id0, w, out);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  std::vector<float> short_out(255);
  EXPECT_FALSE(moe_ffn_q4k_cpu(m.shape, m.experts, x, id0, w, short_out).ok());
  EXPECT_FALSE(moe_ffn_q4k_cpu({256, 256, 2}, m.experts, x, id0, w, out).ok());
  EXPECT_FALSE(moe_ffn_q4k_cpu({256, 256, 0}, m.experts, x, id0, w, out).ok());
}

}  // namespace
}  // namespace moepool::kernels
