// The kernels' CPU reference: dequantization of Q4_K, Q8_0 and F16 against hand-built
// blocks (and, where the prebuilt ggml is linked, bit for bit against ggml's to_float),
// and the routed MoE FFN against an independent naive computation.
#include <gtest/gtest.h>

#include <bit>
#include <cmath>
#include <cstring>
#include <random>
#include <vector>

#include "kernels/dequant.h"
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

// Packs 8 six-bit scales and mins into Q4_K's 12 bytes (the inverse of ggml's layout:
// sub-blocks 0-3 in the low 6 bits of bytes 0-3 / 4-7, sub-blocks 4-7 split into a low
// nibble in bytes 8-11 and two high bits on top of bytes 0-3 / 4-7).
void pack_q4_k_scales(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12]) {
  std::memset(out, 0, 12);
  for (int j = 0; j < 4; ++j) {
    out[j] = sc[j] & 63;
    out[j + 4] = m[j] & 63;
  }
  for (int j = 4; j < 8; ++j) {
    out[j + 4] = static_cast<uint8_t>((sc[j] & 0x0f) | ((m[j] & 0x0f) << 4));
    out[j - 4] |= static_cast<uint8_t>((sc[j] >> 4) << 6);
    out[j] |= static_cast<uint8_t>((m[j] >> 4) << 6);
  }
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

}  // namespace
}  // namespace moepool::kernels
