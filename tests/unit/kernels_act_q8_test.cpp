// kernels/act_q8.h: the int8 decode kernels' activation quantization on the CPU. MoeGpu
// uploads x quantized by quantize_q8_rows; the int8 reference (moe_ffn_reference's
// int8_activations) rounds with round_to_q8_blocks; both must agree to the bit.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <vector>

#include "kernels/act_q8.h"

namespace moepool::kernels {
namespace {

TEST(KernelsActQ8, BlocksBecomeMultiplesOfTheirScaleWithinHalfAStep) {
  std::mt19937 rng(3);
  std::normal_distribution<double> nd(0.0, 2.0);
  std::vector<double> v(96 + 5);
  for (double& x : v) x = nd(rng);
  const std::vector<double> orig = v;
  round_to_q8_blocks(v);
  for (size_t b = 0; b < 96; b += 32) {
    double amax = 0;
    for (size_t i = b; i < b + 32; ++i)
      amax = std::max(amax, static_cast<double>(std::fabs(static_cast<float>(orig[i]))));
    const double d = static_cast<float>(amax) / 127.0f;
    for (size_t i = b; i < b + 32; ++i) {
      const double q = v[i] / d;
      EXPECT_NEAR(q, std::nearbyint(q), 1e-9) << "value " << i << " is not d * an integer";
      EXPECT_LE(std::fabs(q), 127.0 + 1e-9) << "value " << i;
      EXPECT_LE(std::fabs(v[i] - orig[i]), 0.5 * d * (1 + 1e-6)) << "value " << i;
    }
  }
  for (size_t i = 96; i < v.size(); ++i) EXPECT_EQ(v[i], orig[i]) << "the tail is left alone";
}

TEST(KernelsActQ8, TheLargestValueIsKeptAndZerosStayZero) {
  std::vector<double> v(32, 0.0);
  round_to_q8_blocks(v);
  for (double x : v) EXPECT_EQ(x, 0.0);
  for (int i = 0; i < 32; ++i) v[i] = 0.01 * i - 0.1;
  v[7] = -3.0;
  round_to_q8_blocks(v);
  EXPECT_NEAR(v[7], -3.0, 1e-6);  // q = -127: d * -127 = -amax up to float rounding
  EXPECT_EQ(v[10], 0.0);          // 0.0 rounds to 0
}

// What MoeGpu uploads (quants of every block, then every block's meta) is what the reference
// rounds to: d * q equals round_to_q8_blocks' value exactly, and the meta's half sums are
// d times the sums of the quants.
TEST(KernelsActQ8, RowsQuantizeToWhatTheReferenceRoundsTo) {
  std::mt19937 rng(5);
  std::uniform_real_distribution<float> ud(-4.0f, 4.0f);
  const size_t n_blocks = 7;
  std::vector<float> x(n_blocks * 32);
  for (float& v : x) v = ud(rng);
  x[40] = 0.0f;
  for (size_t i = 64; i < 96; ++i) x[i] = 0.0f;  // an all-zero block: d = 0, q = 0
  std::vector<uint8_t> quants(n_blocks * 32, 0xAB);
  std::vector<float> meta(n_blocks * 4, -1.0f);
  quantize_q8_rows(x, quants, meta);
  std::vector<double> ref(x.begin(), x.end());
  round_to_q8_blocks(ref);
  for (size_t b = 0; b < n_blocks; ++b) {
    const float d = meta[4 * b];
    int sum[2] = {0, 0};
    for (size_t i = 0; i < 32; ++i) {
      const int q = static_cast<int8_t>(quants[32 * b + i]);
      ASSERT_LE(std::abs(q), 127);
      sum[i / 16] += q;
      EXPECT_EQ(static_cast<double>(d) * q, ref[32 * b + i]) << "block " << b << " value " << i;
    }
    EXPECT_EQ(meta[4 * b + 1], d * static_cast<float>(sum[0])) << "block " << b;
    EXPECT_EQ(meta[4 * b + 2], d * static_cast<float>(sum[1])) << "block " << b;
    EXPECT_EQ(meta[4 * b + 3], 0.0f) << "block " << b;
  }
  EXPECT_EQ(meta[4 * 2], 0.0f) << "the all-zero block";
  // One value at the block's largest magnitude becomes exactly +-127.
  const Q8Block one = quantize_q8_block(x.data());
  EXPECT_EQ(std::abs(*std::max_element(
                one.q, one.q + 32, [](int8_t a, int8_t b) { return std::abs(a) < std::abs(b); })),
            127);
}

// quantize_q8_rows takes the AVX2 path where the CPU has it: the same bits as the portable
// quantize_q8_block, ties included (127 in a block makes id = 1, so 2.5 rounds to 2 and
// -0.5 to 0, to nearest even as the GPU's roundEven).
TEST(KernelsActQ8, RowsGiveTheBlockFunctionsBitsTiesIncluded) {
  std::vector<float> x(4 * 32);
  for (size_t i = 0; i < 32; ++i) x[i] = static_cast<float>(i) - 15.5f;  // ties, id = 127/16
  x[31] = 127.0f;                                                        // id = 1
  for (size_t i = 0; i < 31; ++i) x[i] = 0.5f * static_cast<float>(i) - 7.5f;
  std::mt19937 rng(9);
  std::normal_distribution<float> nd(0.0f, 3.0f);
  for (size_t i = 32; i < 96; ++i) x[i] = nd(rng);
  for (size_t i = 96; i < 128; ++i) x[i] = -1e-3f * static_cast<float>(i % 7);
  std::vector<uint8_t> quants(x.size());
  std::vector<float> meta(x.size() / 32 * 4);
  quantize_q8_rows(x, quants, meta);
  for (size_t b = 0; b < x.size() / 32; ++b) {
    const Q8Block q = quantize_q8_block(x.data() + 32 * b);
    for (size_t i = 0; i < 32; ++i) {
      EXPECT_EQ(static_cast<int8_t>(quants[32 * b + i]), q.q[i]) << "block " << b << " value " << i;
    }
    for (size_t k = 0; k < 4; ++k) EXPECT_EQ(meta[4 * b + k], q.meta[k]) << "block " << b;
  }
  EXPECT_EQ(static_cast<int8_t>(quants[0]), -8);  // -7.5 rounds to the even -8
  EXPECT_EQ(static_cast<int8_t>(quants[2]), -6);  // -6.5 -> -6
  EXPECT_EQ(static_cast<int8_t>(quants[31]), 127);
}

}  // namespace
}  // namespace moepool::kernels
