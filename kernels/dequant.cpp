#include "kernels/dequant.h"

#include <cstring>
#include <string>

namespace moepool::kernels {
namespace {

uint16_t load_u16(const uint8_t* p) { return static_cast<uint16_t>(p[0] | (p[1] << 8)); }

float bits_to_f32(uint32_t bits) {
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

}  // namespace

float f16_to_f32(uint16_t h) {
  const uint32_t sign = static_cast<uint32_t>(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t mant = h & 0x3ffu;
  if (exp == 0x1f) {  // inf, or NaN (made quiet, payload kept)
    const uint32_t m = mant == 0 ? 0u : ((mant << 13) | 0x00400000u);
    return bits_to_f32(sign | 0x7f800000u | m);
  }
  if (exp == 0) {
    if (mant == 0) return bits_to_f32(sign);  // +-0
    // Subnormal: mant * 2^-24; normalize so the leading 1 reaches bit 10.
    int e = 0;
    do {
      mant <<= 1;
      ++e;
    } while ((mant & 0x400u) == 0);
    mant &= 0x3ffu;
    // Half exponent of the value is -14 - e; float biased exponent is that + 127.
    return bits_to_f32(sign | (static_cast<uint32_t>(127 - 14 - e) << 23) | (mant << 13));
  }
  return bits_to_f32(sign | ((exp - 15 + 127) << 23) | (mant << 13));
}

void q4_k_scale_min(uint32_t j, const uint8_t* q, uint8_t* scale, uint8_t* min) {
  if (j < 4) {
    *scale = q[j] & 63;
    *min = q[j + 4] & 63;
  } else {
    *scale = static_cast<uint8_t>((q[j + 4] & 0x0f) | ((q[j - 4] >> 6) << 4));
    *min = static_cast<uint8_t>((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

void dequant_block_q8_0(const uint8_t* block, float* out) {
  const float d = f16_to_f32(load_u16(block));
  const auto* qs = reinterpret_cast<const int8_t*>(block + 2);
  for (uint32_t i = 0; i < kQ8_0BlockSize; ++i) out[i] = static_cast<float>(qs[i]) * d;
}

void dequant_block_q4_k(const uint8_t* block, float* out) {
  const float d = f16_to_f32(load_u16(block));
  const float dmin = f16_to_f32(load_u16(block + 2));
  const uint8_t* scales = block + 4;
  const uint8_t* qs = block + 4 + kQ4_KScaleBytes;
  // Four chunks of 64 weights: 32 low nibbles (sub-block 2c), then 32 high (2c + 1).
  for (uint32_t c = 0; c < 4; ++c) {
    for (uint32_t half = 0; half < 2; ++half) {
      uint8_t sc, m;
      q4_k_scale_min(2 * c + half, scales, &sc, &m);
      const float d1 = d * static_cast<float>(sc);
      const float m1 = dmin * static_cast<float>(m);
      for (uint32_t l = 0; l < 32; ++l) {
        const uint8_t q = half == 0 ? (qs[32 * c + l] & 0x0f) : (qs[32 * c + l] >> 4);
        out[64 * c + 32 * half + l] = d1 * static_cast<float>(q) - m1;
      }
    }
  }
}

bool dequant_supported(GgmlType type) {
  return type == GgmlType::F32 || type == GgmlType::F16 || type == GgmlType::Q8_0 ||
         type == GgmlType::Q4_K;
}

Status dequant_row(GgmlType type, const void* row, size_t n, float* out) {
  const auto* p = static_cast<const uint8_t*>(row);
  switch (type) {
    case GgmlType::F32:
      std::memcpy(out, p, n * sizeof(float));
      return Status::Ok();
    case GgmlType::F16:
      for (size_t i = 0; i < n; ++i) out[i] = f16_to_f32(load_u16(p + 2 * i));
      return Status::Ok();
    case GgmlType::Q8_0:
      if (n % kQ8_0BlockSize != 0) {
        return InvalidArgument("dequant_row: q8_0 row of " + std::to_string(n) +
                               " elements is not a multiple of 32");
      }
      for (size_t b = 0; b < n / kQ8_0BlockSize; ++b) {
        dequant_block_q8_0(p + b * kQ8_0BlockBytes, out + b * kQ8_0BlockSize);
      }
      return Status::Ok();
    case GgmlType::Q4_K:
      if (n % kQ4_KBlockSize != 0) {
        return InvalidArgument("dequant_row: q4_K row of " + std::to_string(n) +
                               " elements is not a multiple of 256");
      }
      for (size_t b = 0; b < n / kQ4_KBlockSize; ++b) {
        dequant_block_q4_k(p + b * kQ4_KBlockBytes, out + b * kQ4_KBlockSize);
      }
      return Status::Ok();
    default:
      return InvalidArgument("dequant_row: weight type " + std::string(ggml_type_name(type)) +
                             " is not supported (f32, f16, q8_0, q4_K are)");
  }
}

}  // namespace moepool::kernels
