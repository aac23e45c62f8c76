#include "kernels/act_q8.h"

#include <algorithm>
#include <cmath>
#include <cstddef>

namespace moepool::kernels {

void round_to_q8_blocks(std::span<double> v) {
  for (size_t b = 0; b + 32 <= v.size(); b += 32) {
    float amax = 0.0f;
    for (size_t i = 0; i < 32; ++i) amax = std::max(amax, std::fabs(static_cast<float>(v[b + i])));
    const float id = amax > 0.0f ? 127.0f / amax : 0.0f;
    const float d = amax / 127.0f;
    for (size_t i = 0; i < 32; ++i) {
      const float q = std::clamp(std::nearbyint(static_cast<float>(v[b + i]) * id), -127.0f, 127.0f);
      v[b + i] = static_cast<double>(d) * q;
    }
  }
}

}  // namespace moepool::kernels
