// The kernels' CPU reference: dequantization of Q4_K, Q8_0 and F16 against hand-built
// blocks (and, where the prebuilt ggml is linked, bit for bit against ggml's to_float),
// the routed MoE FFN against an independent naive computation, the expert-major grouping
// of a batch, and the expert-major prefill reference against the token-major one.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/dequant.h"
#include "q4_k_scales.h"
#include "kernels/expert_groups.h"
#include "kernels/moe_reference.h"

#ifdef MOEPOOL_HAVE_GGML
#include <ggml.h>
#endif

namespace moepool::kernels {
namespace {

uint32_t bits(float f) { return std::bit_cast<uint32_t>(f); }

// Returns the half encoding of `v`, which must be exactly representable as a normal half.
uint16_t half_exact(float v) {
  if (v == 0.0f) return std::signbit(v) ? 0x8000 : 0;
  const uint16_t sign = v < 0 ? 0x8000 : 0;
  int e = 0;
  const double m = std::frexp(std::fabs(static_cast<double>(v)), &e);  // [0.5, 1)
  const double mant = (2.0 * m - 1.0) * 1024.0;
  EXPECT_EQ(mant, std::floor(mant)) << v << " is not exact in f16";
  EXPECT_GE(e - 1 + 15, 1) << v;
  EXPECT_LE(e - 1 + 15, 30) << v;
  return static_cast<uint16_t>(sign | ((e - 1 + 15) << 10) | static_cast<uint16_t>(mant));
}

void store_u16(uint8_t* p, uint16_t v) {
  p[0] = static_cast<uint8_t>(v & 0xff);
  p[1] = static_cast<uint8_t>(v >> 8);
}

// Builds one Q4_K block from its parameters; q[256] are the 4-bit values in element order.
void build_q4_k(float d, float dmin, const uint8_t sc[8], const uint8_t m[8], const uint8_t* q,
                uint8_t* block) {
  store_u16(block, half_exact(d));
  store_u16(block + 2, half_exact(dmin));
  pack_q4_k_scales(sc, m, block + 4);
  uint8_t* qs = block + 16;
  for (int c = 0; c < 4; ++c) {
    for (int l = 0; l < 32; ++l) {
      qs[32 * c + l] =
          static_cast<uint8_t>((q[64 * c + l] & 0x0f) | ((q[64 * c + 32 + l] & 0x0f) << 4));
    }
  }
}

TEST(KernelsDequant, F16SpecialValues) {
  EXPECT_EQ(bits(f16_to_f32(0x0000)), 0x00000000u);
  EXPECT_EQ(bits(f16_to_f32(0x8000)), 0x80000000u);  // -0
  EXPECT_EQ(f16_to_f32(0x3c00), 1.0f);
  EXPECT_EQ(f16_to_f32(0xc000), -2.0f);
  EXPECT_EQ(f16_to_f32(0x7bff), 65504.0f);               // largest normal
  EXPECT_EQ(f16_to_f32(0x0400), std::ldexp(1.0f, -14));  // smallest normal
  EXPECT_EQ(f16_to_f32(0x0001), std::ldexp(1.0f, -24));  // smallest subnormal
  EXPECT_EQ(f16_to_f32(0x03ff), std::ldexp(1023.0f, -24));
  EXPECT_EQ(f16_to_f32(0x8200), -std::ldexp(1.0f, -15));
  EXPECT_EQ(f16_to_f32(0x3555), 0x1.554p-2f);
  EXPECT_TRUE(std::isinf(f16_to_f32(0x7c00)) && f16_to_f32(0x7c00) > 0);
  EXPECT_TRUE(std::isinf(f16_to_f32(0xfc00)) && f16_to_f32(0xfc00) < 0);
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7e00)));
  EXPECT_TRUE(std::isnan(f16_to_f32(0x7c01)));  // signalling NaN stays a NaN, not inf
  EXPECT_TRUE(std::isnan(f16_to_f32(0xfe00)) && std::signbit(f16_to_f32(0xfe00)));
}

TEST(KernelsDequant, F16EveryFiniteValueExact) {
  for (uint32_t h = 0; h < 0x10000; ++h) {
    const uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
    if (exp == 0x1f) continue;
    // value = (implicit bit + mant) * 2^(max(exp,1) - 25), sign applied; exact in double.
    double v = std::ldexp(static_cast<double>((exp ? 1024 : 0) + mant), (exp ? int(exp) : 1) - 25);
    if (h & 0x8000) v = -v;
    ASSERT_EQ(bits(f16_to_f32(static_cast<uint16_t>(h))), bits(static_cast<float>(v)))
        << std::hex << h;
  }
}

TEST(KernelsDequant, Q8_0KnownBlock) {
  uint8_t block[kQ8_0BlockBytes];
  store_u16(block, 0x3800);  // d = 0.5
  int8_t qs[32];
  for (int i = 0; i < 32; ++i) qs[i] = static_cast<int8_t>(i * 9 - 140);
  qs[0] = -128;
  qs[31] = 127;
  std::memcpy(block + 2, qs, 32);
  float out[32];
  dequant_block_q8_0(block, out);
  for (int i = 0; i < 32; ++i) EXPECT_EQ(out[i], 0.5f * qs[i]) << i;
  EXPECT_EQ(out[0], -64.0f);
  EXPECT_EQ(out[31], 63.5f);
}

TEST(KernelsDequant, Q4_KScaleMinLayoutRoundTrips) {
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    uint8_t sc[8], m[8], packed[12];
    for (int j = 0; j < 8; ++j) {
      sc[j] = static_cast<uint8_t>(rng() & 63);
      m[j] = static_cast<uint8_t>(rng() & 63);
    }
    pack_q4_k_scales(sc, m, packed);
    for (uint32_t j = 0; j < 8; ++j) {
      uint8_t s = 0, mm = 0;
      q4_k_scale_min(j, packed, &s, &mm);
      ASSERT_EQ(s, sc[j]) << "sub-block " << j;
      ASSERT_EQ(mm, m[j]) << "sub-block " << j;
    }
  }
}

TEST(KernelsDequant, Q4_KKnownBlock) {
  const uint8_t sc[8] = {1, 5, 17, 63, 2, 33, 48, 9};
  const uint8_t m[8] = {0, 3, 62, 20, 63, 1, 16, 40};
  uint8_t q[256];
  for (int i = 0; i < 256; ++i) q[i] = static_cast<uint8_t>((i * 7 + 3) & 0x0f);
  uint8_t block[kQ4_KBlockBytes];
  build_q4_k(1.0f, 0.5f, sc, m, q, block);
  float out[256];
  dequant_block_q4_k(block, out);
  for (int i = 0; i < 256; ++i) {
    const int sub = i / 32;  // elements 32s..32s+31 belong to sub-block s
    EXPECT_EQ(out[i], 1.0f * sc[sub] * q[i] - 0.5f * m[sub]) << i;
  }
  EXPECT_EQ(out[3 * 32 + 0], 63.0f * q[96] - 10.0f);  // scale 63 (all 6 bits used)
  EXPECT_EQ(out[4 * 32 + 0], 2.0f * q[128] - 31.5f);  // min 63 in the split layout
}

TEST(KernelsDequant, RowChecksTypeAndLength) {
  std::vector<uint8_t> bytes(1024);
  std::vector<float> out(512);
  EXPECT_FALSE(dequant_row(GgmlType::Q6_K, bytes.data(), 256, out.data()).ok());
  EXPECT_FALSE(dequant_row(GgmlType::Q8_0, bytes.data(), 48, out.data()).ok());
  EXPECT_FALSE(dequant_row(GgmlType::Q4_K, bytes.data(), 128, out.data()).ok());
  EXPECT_TRUE(dequant_row(GgmlType::Q8_0, bytes.data(), 64, out.data()).ok());
  const Status st = dequant_row(GgmlType::Q4_K, bytes.data(), 100, out.data());
  EXPECT_NE(st.message().find("256"), std::string::npos) << st.message();
}

#ifdef MOEPOOL_HAVE_GGML
// Returns random bytes for `blocks` blocks of `type`, with every f16 scale a finite value.
std::vector<uint8_t> random_blocks(GgmlType type, int blocks, std::mt19937& rng) {
  const auto tr = *ggml_type_traits(static_cast<uint32_t>(type));
  std::vector<uint8_t> b(static_cast<size_t>(tr.type_size) * blocks);
  for (auto& v : b) v = static_cast<uint8_t>(rng());
  auto finite_half = [&] {
    uint16_t h;
    do h = static_cast<uint16_t>(rng());
    while (((h >> 10) & 0x1f) == 0x1f);
    return h;
  };
  for (int i = 0; i < blocks; ++i) {
    uint8_t* blk = b.data() + static_cast<size_t>(i) * tr.type_size;
    if (type == GgmlType::Q8_0) store_u16(blk, finite_half());
    if (type == GgmlType::Q4_K) {
      store_u16(blk, finite_half());
      store_u16(blk + 2, finite_half());
    }
  }
  return b;
}

void expect_same_as_ggml(GgmlType type, const std::vector<uint8_t>& bytes, size_t n) {
  std::vector<float> ours(n), theirs(n);
  ASSERT_TRUE(dequant_row(type, bytes.data(), n, ours.data()).ok());
  const auto* tr = ggml_get_type_traits(static_cast<ggml_type>(type));
  ASSERT_NE(tr, nullptr);
  ASSERT_NE(tr->to_float, nullptr);
  tr->to_float(bytes.data(), theirs.data(), static_cast<int64_t>(n));
  for (size_t i = 0; i < n; ++i) {
    if (std::isnan(theirs[i])) {
      ASSERT_TRUE(std::isnan(ours[i])) << ggml_type_name(type) << " element " << i;
    } else {
      ASSERT_EQ(bits(ours[i]), bits(theirs[i]))
          << ggml_type_name(type) << " element " << i << ": " << ours[i] << " vs " << theirs[i];
    }
  }
}

TEST(KernelsDequant, BitExactWithGgml) {
  std::mt19937 rng(12345);
  for (int trial = 0; trial < 50; ++trial) {
    expect_same_as_ggml(GgmlType::Q8_0, random_blocks(GgmlType::Q8_0, 16, rng), 16 * 32);
    expect_same_as_ggml(GgmlType::Q4_K, random_blocks(GgmlType::Q4_K, 8, rng), 8 * 256);
  }
  // Every f16 value, NaNs and infinities included.
  std::vector<uint8_t> all(2 * 65536);
  for (uint32_t h = 0; h < 65536; ++h) store_u16(all.data() + 2 * h, static_cast<uint16_t>(h));
  expect_same_as_ggml(GgmlType::F16, all, 65536);
}
#else
TEST(KernelsDequant, BitExactWithGgml) {
  GTEST_SKIP() << "built without the prebuilt ggml (-DMOEPOOL_WITH_LLAMA=ON after "
                  "scripts/llama-deps); the hand-built block tests still ran";
}
#endif

// ---- MoE FFN reference ----

// One projection held both as the bytes the reference reads and as the exact floats those
// bytes stand for (built from integer parameters here, not by dequantizing).
struct TestMatrix {
  GgmlType type;
  uint32_t rows, cols;
  std::vector<uint8_t> bytes;
  std::vector<float> value;  // [rows][cols]
};

TestMatrix make_matrix(GgmlType type, uint32_t rows, uint32_t cols, std::mt19937& rng) {
  TestMatrix m{type, rows, cols, {}, std::vector<float>(size_t{rows} * cols)};
  std::uniform_int_distribution<int> i8(-127, 127), nib(0, 15), six(0, 63), f16q(-64, 64);
  for (uint32_t r = 0; r < rows; ++r) {
    float* v = m.value.data() + size_t{r} * cols;
    if (type == GgmlType::F16) {
      for (uint32_t c = 0; c < cols; ++c) {
        v[c] = f16q(rng) / 128.0f;
        uint8_t b[2];
        store_u16(b, half_exact(v[c]));
        m.bytes.insert(m.bytes.end(), b, b + 2);
      }
    } else if (type == GgmlType::Q8_0) {
      for (uint32_t b0 = 0; b0 < cols; b0 += 32) {
        const float d = 1.0f / 1024 * static_cast<float>(1 + rng() % 4);
        uint8_t blk[kQ8_0BlockBytes];
        store_u16(blk, half_exact(d));
        for (int i = 0; i < 32; ++i) {
          const int q = i8(rng);
          blk[2 + i] = static_cast<uint8_t>(static_cast<int8_t>(q));
          v[b0 + i] = d * static_cast<float>(q);
        }
        m.bytes.insert(m.bytes.end(), blk, blk + sizeof blk);
      }
    } else {  // Q4_K
      for (uint32_t b0 = 0; b0 < cols; b0 += 256) {
        const float d = 1.0f / 4096, dmin = 1.0f / 2048;
        uint8_t sc[8], mn[8], q[256], blk[kQ4_KBlockBytes];
        for (int j = 0; j < 8; ++j) {
          sc[j] = static_cast<uint8_t>(six(rng));
          mn[j] = static_cast<uint8_t>(six(rng));
        }
        for (int i = 0; i < 256; ++i) {
          q[i] = static_cast<uint8_t>(nib(rng));
          v[b0 + i] = d * sc[i / 32] * q[i] - dmin * mn[i / 32];  // exact: small integers * 2^-12
        }
        build_q4_k(d, dmin, sc, mn, q, blk);
        m.bytes.insert(m.bytes.end(), blk, blk + sizeof blk);
      }
    }
  }
  return m;
}

struct TestExpert {
  TestMatrix gate, up, down;
};

// out[t] = sum_k w * down(silu(gate x) * up x), straight from the float values.
std::vector<double> naive_moe(const std::vector<TestExpert>& ex, uint32_t embd, uint32_t ff,
                              uint32_t top_k, const std::vector<float>& x,
                              const std::vector<uint32_t>& ids, const std::vector<float>& w) {
  const size_t n_tokens = x.size() / embd;
  std::vector<double> out(x.size(), 0.0);
  for (size_t t = 0; t < n_tokens; ++t) {
    for (uint32_t k = 0; k < top_k; ++k) {
      const TestExpert& e = ex[ids[t * top_k + k]];
      std::vector<double> h(ff);
      for (uint32_t r = 0; r < ff; ++r) {
        double g = 0, u = 0;
        for (uint32_t c = 0; c < embd; ++c) {
          g += double{e.gate.value[size_t{r} * embd + c]} * x[t * embd + c];
          u += double{e.up.value[size_t{r} * embd + c]} * x[t * embd + c];
        }
        h[r] = g / (1.0 + std::exp(-g)) * u;
      }
      for (uint32_t r = 0; r < embd; ++r) {
        double s = 0;
        for (uint32_t c = 0; c < ff; ++c) s += double{e.down.value[size_t{r} * ff + c]} * h[c];
        out[t * embd + r] += double{w[t * top_k + k]} * s;
      }
    }
  }
  return out;
}

void check_moe(uint32_t embd, uint32_t ff, uint32_t n_experts, uint32_t top_k, uint32_t n_tokens,
               GgmlType gate_t, GgmlType up_t, GgmlType down_t, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<TestExpert> ex;
  std::vector<ExpertWeights> weights;
  for (uint32_t e = 0; e < n_experts; ++e) {
    ex.push_back({make_matrix(gate_t, ff, embd, rng), make_matrix(up_t, ff, embd, rng),
                  make_matrix(down_t, embd, ff, rng)});
  }
  for (const auto& e : ex) {
    weights.push_back({{e.gate.type, e.gate.bytes.data()},
                       {e.up.type, e.up.bytes.data()},
                       {e.down.type, e.down.bytes.data()}});
  }
  std::uniform_real_distribution<float> xd(-2.0f, 2.0f);
  std::vector<float> x(size_t{n_tokens} * embd), w(size_t{n_tokens} * top_k);
  std::vector<uint32_t> ids(size_t{n_tokens} * top_k);
  for (auto& v : x) v = xd(rng);
  for (uint32_t t = 0; t < n_tokens; ++t) {
    for (uint32_t k = 0; k < top_k; ++k) {
      ids[t * top_k + k] = (t + k * 2 + 1) % n_experts;
      w[t * top_k + k] = 0.25f + 0.5f * static_cast<float>(k) / top_k;
    }
  }
  std::vector<float> out(x.size(), 123.0f);
  const MoeShape shape{embd, ff, top_k};
  const Status st = moe_ffn_reference(shape, weights, x, ids, w, out);
  ASSERT_TRUE(st.ok()) << st.to_string();
  const std::vector<double> want = naive_moe(ex, embd, ff, top_k, x, ids, w);
  double max_abs = 0;
  for (double v : want) max_abs = std::max(max_abs, std::fabs(v));
  ASSERT_GT(max_abs, 0.0);
  for (size_t i = 0; i < out.size(); ++i) {
    EXPECT_NEAR(out[i], want[i], 1e-6 * max_abs + 1e-7) << "element " << i;
  }
}

TEST(KernelsMoeReference, OneTokenTwoExpertsHandBuilt) {
  // embd 32, ff 32, 2 experts, 1 token; x = e0 so every dot product is one weight.
  const uint32_t embd = 32, ff = 32;
  std::vector<std::vector<uint8_t>> bytes;
  std::vector<ExpertWeights> experts;
  std::vector<std::vector<float>> gate(2), up(2), down(2);
  for (int e = 0; e < 2; ++e) {
    // gate/up as F16, down as Q8_0 with d = 1/64.
    gate[e].assign(ff * embd, 0.0f);
    up[e].assign(ff * embd, 0.0f);
    std::vector<uint8_t> g(2 * ff * embd), u(2 * ff * embd), dn;
    for (uint32_t r = 0; r < ff; ++r) {
      for (uint32_t c = 0; c < embd; ++c) {
        const float gv = static_cast<float>(static_cast<int>(r) - 16 + e) / 8.0f;
        const float uv = static_cast<float>((r * 3 + c + e) % 7) / 4.0f - 0.75f;
        gate[e][r * embd + c] = gv;
        up[e][r * embd + c] = uv;
        store_u16(g.data() + 2 * (r * embd + c), half_exact(gv));
        store_u16(u.data() + 2 * (r * embd + c), half_exact(uv));
      }
    }
    down[e].assign(embd * ff, 0.0f);
    for (uint32_t r = 0; r < embd; ++r) {
      uint8_t blk[kQ8_0BlockBytes];
      store_u16(blk, half_exact(1.0f / 64));
      for (uint32_t c = 0; c < ff; ++c) {
        const int q = static_cast<int>((r * 5 + c * 3 + e) % 17) - 8;
        blk[2 + c] = static_cast<uint8_t>(static_cast<int8_t>(q));
        down[e][r * ff + c] = q / 64.0f;
      }
      dn.insert(dn.end(), blk, blk + sizeof blk);
    }
    bytes.push_back(std::move(g));
    bytes.push_back(std::move(u));
    bytes.push_back(std::move(dn));
  }
  for (int e = 0; e < 2; ++e) {
    experts.push_back({{GgmlType::F16, bytes[3 * e].data()},
                       {GgmlType::F16, bytes[3 * e + 1].data()},
                       {GgmlType::Q8_0, bytes[3 * e + 2].data()}});
  }
  std::vector<float> x(embd, 0.0f);
  x[0] = 1.0f;
  const std::vector<uint32_t> ids = {1, 0};
  const std::vector<float> w = {0.75f, 0.25f};
  std::vector<float> out(embd);
  ASSERT_TRUE(moe_ffn_reference({embd, ff, 2}, experts, x, ids, w, out).ok());
  for (uint32_t i = 0; i < embd; ++i) {
    double want = 0;
    for (int k = 0; k < 2; ++k) {
      const int e = static_cast<int>(ids[k]);
      for (uint32_t r = 0; r < ff; ++r) {
        const double g = gate[e][r * embd], u = up[e][r * embd];  // column 0 only
        want += w[k] * down[e][i * ff + r] * (g / (1.0 + std::exp(-g))) * u;
      }
    }
    EXPECT_NEAR(out[i], want, 1e-6) << i;
  }
}

TEST(KernelsMoeReference, MatchesNaiveQ8_0AndF16) {
  check_moe(32, 64, 2, 1, 1, GgmlType::Q8_0, GgmlType::F16, GgmlType::Q8_0, 1);
  check_moe(64, 32, 4, 2, 3, GgmlType::F16, GgmlType::Q8_0, GgmlType::F16, 2);
}

TEST(KernelsMoeReference, MatchesNaiveQ4_K) {
  check_moe(256, 256, 2, 1, 1, GgmlType::Q4_K, GgmlType::Q4_K, GgmlType::Q4_K, 3);
  check_moe(256, 256, 3, 2, 2, GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::Q4_K, 4);
}

TEST(KernelsMoeReference, RefusesBadInput) {
  std::vector<uint8_t> bytes(256 * 256 * 2);
  const std::vector<ExpertWeights> one = {{{GgmlType::F16, bytes.data()},
                                           {GgmlType::F16, bytes.data()},
                                           {GgmlType::F16, bytes.data()}}};
  std::vector<float> x(32, 1.0f), out(32);
  const std::vector<float> w = {1.0f};
  Status st = moe_ffn_reference({32, 32, 1}, one, x, std::vector<uint32_t>{1}, w, out);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("ids[0]"), std::string::npos) << st.message();

  std::vector<ExpertWeights> q4 = one;
  q4[0].gate.type = GgmlType::Q4_K;  // 32 columns is not a multiple of 256
  st = moe_ffn_reference({32, 32, 1}, q4, x, std::vector<uint32_t>{0}, w, out);
  EXPECT_NE(st.message().find("gate"), std::string::npos) << st.message();

  std::vector<ExpertWeights> q6 = one;
  q6[0].down.type = GgmlType::Q6_K;
  st = moe_ffn_reference({32, 32, 1}, q6, x, std::vector<uint32_t>{0}, w, out);
  EXPECT_NE(st.message().find("q6_K"), std::string::npos) << st.message();

  std::vector<ExpertWeights> null_up = one;
  null_up[0].up.data = nullptr;
  st = moe_ffn_reference({32, 32, 1}, null_up, x, std::vector<uint32_t>{0}, w, out);
  EXPECT_NE(st.message().find("up"), std::string::npos) << st.message();

  std::vector<float> short_out(31);
  EXPECT_FALSE(moe_ffn_reference({32, 32, 1}, one, x, std::vector<uint32_t>{0}, w, short_out).ok());
}

// ---- Expert-major grouping ----

TEST(KernelsExpertGroups, SortsByExpertThenTokenHandBuilt) {
  // 3 tokens, top_k 2, 4 experts: token 0 -> {2, 0}, token 1 -> {0, 2}, token 2 -> {1, 2}.
  const std::vector<uint32_t> ids = {2, 0, 0, 2, 1, 2};
  Result<ExpertGroups> g = group_by_expert(ids, 2, 4, 2);
  ASSERT_TRUE(g.ok()) << g.status().to_string();
  EXPECT_EQ(g->expert_first, (std::vector<uint32_t>{0, 2, 3, 6, 6}));
  const std::vector<std::pair<uint32_t, uint32_t>> want = {{0, 1}, {1, 0}, {2, 0},
                                                           {0, 0}, {1, 1}, {2, 1}};
  ASSERT_EQ(g->pairs.size(), want.size());
  for (size_t i = 0; i < want.size(); ++i) {
    EXPECT_EQ(g->pairs[i].token, want[i].first) << i;
    EXPECT_EQ(g->pairs[i].k, want[i].second) << i;
  }
  // Expert 0: one tile of 2; expert 1: one of 1; expert 2: 2 + 1; expert 3: none.
  ASSERT_EQ(g->tiles.size(), 4u);
  const uint32_t tiles[4][3] = {{0, 0, 2}, {1, 2, 1}, {2, 3, 2}, {2, 5, 1}};
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(g->tiles[i].expert, tiles[i][0]) << i;
    EXPECT_EQ(g->tiles[i].first_pair, tiles[i][1]) << i;
    EXPECT_EQ(g->tiles[i].n_pairs, tiles[i][2]) << i;
  }
}

TEST(KernelsExpertGroups, CoversEveryPairOnceInTiles) {
  std::mt19937 rng(77);
  const uint32_t n_tokens = 300, top_k = 4, n_experts = 16;
  std::vector<uint32_t> ids(n_tokens * top_k);
  for (uint32_t t = 0; t < n_tokens; ++t) {
    ids[t * top_k] = 3;  // every token on expert 3: 300 pairs, more than any tile
    for (uint32_t k = 1; k < top_k; ++k) ids[t * top_k + k] = 4 + rng() % (n_experts - 4);
  }
  for (uint32_t tile : {1u, 32u, 64u, 128u, 1000u}) {
    Result<ExpertGroups> g = group_by_expert(ids, top_k, n_experts, tile);
    ASSERT_TRUE(g.ok()) << g.status().to_string();
    ASSERT_EQ(g->pairs.size(), ids.size());
    ASSERT_EQ(g->expert_first.size(), n_experts + 1);
    EXPECT_EQ(g->expert_first[3 + 1] - g->expert_first[3], n_tokens);
    std::vector<int> seen(ids.size(), 0);
    uint32_t next_pair = 0, prev_expert = 0;
    for (const ExpertTile& t : g->tiles) {
      EXPECT_GE(t.n_pairs, 1u);
      EXPECT_LE(t.n_pairs, tile);
      EXPECT_EQ(t.first_pair, next_pair) << "tiles are contiguous, in expert order";
      EXPECT_GE(t.expert, prev_expert);
      EXPECT_GE(t.first_pair, g->expert_first[t.expert]);
      EXPECT_LE(t.first_pair + t.n_pairs, g->expert_first[t.expert + 1]);
      for (uint32_t p = t.first_pair; p < t.first_pair + t.n_pairs; ++p) {
        const RoutedPair rp = g->pairs[p];
        ASSERT_EQ(ids[rp.token * top_k + rp.k], t.expert) << "pair " << p;
        ++seen[rp.token * top_k + rp.k];
        if (p > g->expert_first[t.expert]) {  // sorted by token, then k, within an expert
          const RoutedPair prev = g->pairs[p - 1];
          EXPECT_TRUE(prev.token < rp.token || (prev.token == rp.token && prev.k < rp.k));
        }
      }
      next_pair = t.first_pair + t.n_pairs;
      prev_expert = t.expert;
    }
    EXPECT_EQ(next_pair, ids.size());
    for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], 1) << "pair " << i;
    const size_t expert3_tiles = (n_tokens + tile - 1) / tile;
    size_t n3 = 0;
    for (const ExpertTile& t : g->tiles) n3 += t.expert == 3;
    EXPECT_EQ(n3, expert3_tiles) << "tile " << tile;
  }
}

TEST(KernelsExpertGroups, RefusesBadInput) {
  const std::vector<uint32_t> ids = {0, 1, 2, 7};
  Result<ExpertGroups> g = group_by_expert(ids, 2, 4, 8);
  ASSERT_FALSE(g.ok());
  EXPECT_EQ(g.status().code(), Code::kInvalidArgument);
  const std::string& m = g.status().message();
  EXPECT_NE(m.find("token 1"), std::string::npos) << m;
  EXPECT_NE(m.find("k 1"), std::string::npos) << m;
  EXPECT_NE(m.find("7"), std::string::npos) << m;
  EXPECT_EQ(group_by_expert(ids, 2, 8, 0).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(group_by_expert(ids, 3, 8, 4).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(group_by_expert(ids, 0, 8, 4).status().code(), Code::kInvalidArgument);
  // No tokens at all is a valid, empty batch.
  Result<ExpertGroups> empty = group_by_expert({}, 2, 3, 4);
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->pairs.empty() && empty->tiles.empty());
  EXPECT_EQ(empty->expert_first, (std::vector<uint32_t>{0, 0, 0, 0}));
}

// ---- Expert-major prefill reference ----

TEST(KernelsMoePrefill, MatchesTokenMajorReference) {
  // 160 tokens, top_k 3, 6 experts; every token's k = 1 goes to expert 2 (160 pairs > 128),
  // the others spread; mixed weight types; odd router weights.
  const uint32_t embd = 256, ff = 256, top_k = 3, n_experts = 6, n_tokens = 160;
  std::mt19937 rng(2024);
  std::vector<TestExpert> ex;
  std::vector<ExpertWeights> weights;
  const GgmlType types[3] = {GgmlType::Q4_K, GgmlType::Q8_0, GgmlType::F16};
  for (uint32_t e = 0; e < n_experts; ++e) {
    ex.push_back({make_matrix(types[e % 3], ff, embd, rng),
                  make_matrix(GgmlType::Q4_K, ff, embd, rng),
                  make_matrix(types[(e + 1) % 3], embd, ff, rng)});
  }
  for (const auto& e : ex) {
    weights.push_back({{e.gate.type, e.gate.bytes.data()},
                       {e.up.type, e.up.bytes.data()},
                       {e.down.type, e.down.bytes.data()}});
  }
  std::uniform_real_distribution<float> xd(-2.0f, 2.0f);
  std::vector<float> x(size_t{n_tokens} * embd), w(size_t{n_tokens} * top_k);
  std::vector<uint32_t> ids(size_t{n_tokens} * top_k);
  for (auto& v : x) v = xd(rng);
  const float odd[] = {0.7f, -0.25f, 0.0f, 1e-5f, 2.5f};
  for (uint32_t t = 0; t < n_tokens; ++t) {
    ids[t * top_k] = (t * 7) % 2;           // experts 0-1
    ids[t * top_k + 1] = 2;                 // expert 2: every token
    ids[t * top_k + 2] = 3 + (t * 5) % 3;   // experts 3-5
    for (uint32_t k = 0; k < top_k; ++k) w[t * top_k + k] = odd[(t + 2 * k) % 5];
  }
  const MoeShape shape{embd, ff, top_k};
  std::vector<float> want(x.size());
  ASSERT_TRUE(moe_ffn_reference(shape, weights, x, ids, w, want).ok());
  double max_abs = 0;
  for (float v : want) max_abs = std::max(max_abs, double{std::fabs(v)});
  ASSERT_GT(max_abs, 0.0);
  for (uint32_t tile : {32u, 64u, 128u}) {
    std::vector<float> got(x.size(), -5.0f);
    const Status st = moe_prefill_reference(shape, weights, x, ids, w, tile, got);
    ASSERT_TRUE(st.ok()) << st.to_string();
    // Both sum the same double terms per token, in a different order, then round to float:
    // at most about one float ulp apart.
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_NEAR(got[i], want[i], 1.2e-7 * std::fabs(want[i]) + 1e-12 * max_abs)
          << "tile " << tile << " element " << i;
    }
  }
}

TEST(KernelsMoePrefill, RefusesBadInput) {
  std::vector<uint8_t> bytes(32 * 32 * 2);
  const std::vector<ExpertWeights> one = {{{GgmlType::F16, bytes.data()},
                                           {GgmlType::F16, bytes.data()},
                                           {GgmlType::F16, bytes.data()}}};
  std::vector<float> x(32, 1.0f), out(32);
  const std::vector<float> w = {1.0f};
  Status st = moe_prefill_reference({32, 32, 1}, one, x, std::vector<uint32_t>{0}, w, 0, out);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("tile"), std::string::npos) << st.message();
  st = moe_prefill_reference({32, 32, 1}, one, x, std::vector<uint32_t>{1}, w, 8, out);
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("ids[0]"), std::string::npos) << st.message();
  std::vector<ExpertWeights> q6 = one;
  q6[0].up.type = GgmlType::Q6_K;
  st = moe_prefill_reference({32, 32, 1}, q6, x, std::vector<uint32_t>{0}, w, 8, out);
  EXPECT_NE(st.message().find("up"), std::string::npos) << st.message();
  EXPECT_TRUE(moe_prefill_reference({32, 32, 1}, one, x, std::vector<uint32_t>{0}, w, 8, out).ok());
}

}  // namespace
}  // namespace moepool::kernels
