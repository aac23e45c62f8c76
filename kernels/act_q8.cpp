#include "kernels/act_q8.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>

namespace moepool::kernels {

Q8Block quantize_q8_block(const float* v) {
  float amax = 0.0f;
  for (size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(v[i]));
  const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
  const float d = amax / 127.0f;
  Q8Block b;
  int sum[2] = {0, 0};
  for (size_t i = 0; i < 32; ++i) {
    const float q = std::clamp(std::nearbyint(v[i] * id), -127.0f, 127.0f);
    b.q[i] = static_cast<int8_t>(q);
    sum[i / 16] += b.q[i];
  }
  b.meta[0] = d;
  b.meta[1] = d * static_cast<float>(sum[0]);
  b.meta[2] = d * static_cast<float>(sum[1]);
  b.meta[3] = 0.0f;
  return b;
}

void round_to_q8_blocks(std::span<double> v) {
  float f[32];
  for (size_t b = 0; b + 32 <= v.size(); b += 32) {
    for (size_t i = 0; i < 32; ++i) f[i] = static_cast<float>(v[b + i]);
    const Q8Block q = quantize_q8_block(f);
    for (size_t i = 0; i < 32; ++i) v[b + i] = static_cast<double>(q.meta[0]) * q.q[i];
  }
}

void quantize_q8_rows(std::span<const float> x, std::span<uint8_t> quants, std::span<float> meta) {
  const size_t n_blocks = std::min({x.size() / 32, quants.size() / 32, meta.size() / 4});
  for (size_t b = 0; b < n_blocks; ++b) {
    const Q8Block q = quantize_q8_block(x.data() + b * 32);
    std::memcpy(quants.data() + b * 32, q.q, 32);
    std::memcpy(meta.data() + b * 4, q.meta, sizeof q.meta);
  }
}

}  // namespace moepool::kernels
