// round_to_q8_blocks (kernels/act_q8.h): the CPU model of the int8 decode kernels'
// activation quantization, which the int8 reference (moe_ffn_reference's int8_activations)
// relies on to reproduce those kernels to ~1e-14.
#include "kernels/act_q8.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <vector>

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
    for (size_t i = b; i < b + 32; ++i) amax = std::max(amax, static_cast<double>(std::fabs(static_cast<float>(orig[i]))));
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

}  // namespace
}  // namespace moepool::kernels
