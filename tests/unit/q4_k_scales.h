// Test helper: builds Q4_K's 12 scale bytes, the inverse of ggml's layout that
// kernels/dequant.h's q4_k_scale_min() reads (shared by the kernel tests that craft blocks).
#pragma once

#include <cstdint>
#include <cstring>

namespace moepool::kernels {

// Packs 8 six-bit scales and mins into Q4_K's 12 bytes: sub-blocks 0-3 in the low 6 bits
// of bytes 0-3 / 4-7, sub-blocks 4-7 split into a low nibble in bytes 8-11 and two high bits
// on top of bytes 0-3 / 4-7.
inline void pack_q4_k_scales(const uint8_t sc[8], const uint8_t m[8], uint8_t out[12]) {
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

}  // namespace moepool::kernels
