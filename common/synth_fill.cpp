// synth_fill: the deterministic contents of synthetic model tensors (see synth_model.h).
#include <algorithm>
#include <bit>
#include <cstring>

#include "common/synth_model.h"

namespace moepool {
namespace {

static_assert(std::endian::native == std::endian::little, "GGUF bytes are little-endian");

constexpr uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// splitmix64's output function.
inline uint64_t mix(uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// The w-th output (0-based) of splitmix64 whose state starts at `key`.
inline uint64_t word(uint64_t key, uint64_t w) { return mix(key + (w + 1) * kGolden); }

uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xCBF29CE484222325ull;
  for (unsigned char c : s) {
    h ^= c;
    h *= 0x100000001B3ull;
  }
  return h;
}

// How a field's raw bits become a valid value.
enum class FieldKind : uint8_t {
  kScaleF16,   // positive, in [2^-11, 2^-3)
  kScaleF32,   // positive, in [2^-11, 2^-3)
  kScaleE8M0,  // exponent byte 2^-8 .. 2^-1
  kIq1mTop,    // top nibble of iq1_m's last scale word: the packed f16 scale's sign+exp
};

uint32_t transform(FieldKind kind, uint32_t r) {
  switch (kind) {
    case FieldKind::kScaleF16:
      return (r & 0x03FFu) | ((4u + ((r >> 10) & 7u)) << 10);
    case FieldKind::kScaleF32:
      return (r & 0x007FFFFFu) | ((116u + ((r >> 23) & 7u)) << 23);
    case FieldKind::kScaleE8M0:
      return 119u + (r & 7u);
    case FieldKind::kIq1mTop:
      return (r & 0x0FFFu) | 0x2000u;  // exponent 8..11
  }
  return r;
}

uint32_t kind_width(FieldKind kind) {
  switch (kind) {
    case FieldKind::kScaleF32:
      return 4;
    case FieldKind::kScaleE8M0:
      return 1;
    default:
      return 2;
  }
}

// A field at byte `at` of every `stride`-byte block of a tensor.
struct Field {
  uint32_t at;
  FieldKind kind;
};

struct Fields {
  uint32_t stride = 0;  // 0: no fields, all bytes raw
  Field f[4];
  uint32_t n = 0;
};

// Scale fields per block of a quant type, from ggml-common.h's block structs.
Fields fields_of(GgmlType type) {
  auto one = [](uint32_t stride, uint32_t at, FieldKind k) {
    Fields fs;
    fs.stride = stride;
    fs.f[0] = {at, k};
    fs.n = 1;
    return fs;
  };
  auto two = [](uint32_t stride, uint32_t a, uint32_t b, FieldKind k) {
    Fields fs;
    fs.stride = stride;
    fs.f[0] = {a, k};
    fs.f[1] = {b, k};
    fs.n = 2;
    return fs;
  };
  auto t = ggml_type_traits(static_cast<uint32_t>(type));
  const uint32_t bs = t ? t->type_size : 0;
  switch (type) {
    case GgmlType::Q4_1:
    case GgmlType::Q5_1:
    case GgmlType::Q8_1:
    case GgmlType::Q4_K:
    case GgmlType::Q5_K:
      return two(bs, 0, 2, FieldKind::kScaleF16);  // d, dmin (or m, s)
    case GgmlType::Q2_K:
      return two(bs, 80, 82, FieldKind::kScaleF16);  // after scales, qs
    case GgmlType::Q3_K:
      return one(bs, 108, FieldKind::kScaleF16);  // after hmask, qs, scales
    case GgmlType::Q6_K:
      return one(bs, 208, FieldKind::kScaleF16);  // after ql, qh, scales
    case GgmlType::Q8_K:
      return one(bs, 0, FieldKind::kScaleF32);
    case GgmlType::TQ1_0:
      return one(bs, 52, FieldKind::kScaleF16);
    case GgmlType::TQ2_0:
      return one(bs, 64, FieldKind::kScaleF16);
    case GgmlType::MXFP4:
      return one(bs, 0, FieldKind::kScaleE8M0);
    case GgmlType::IQ1_M:
      return one(bs, 54, FieldKind::kIq1mTop);
    case GgmlType::Q4_0:
    case GgmlType::Q5_0:
    case GgmlType::Q8_0:
    case GgmlType::IQ2_XXS:
    case GgmlType::IQ2_XS:
    case GgmlType::IQ3_XXS:
    case GgmlType::IQ1_S:
    case GgmlType::IQ4_NL:
    case GgmlType::IQ3_S:
    case GgmlType::IQ2_S:
    case GgmlType::IQ4_XS:
      return one(bs, 0, FieldKind::kScaleF16);  // d first
    default:
      return {};  // float types are handled by lanes_*; integer types stay raw
  }
}

// Writes stream bytes [offset, offset + out.size()), each word passed through `xf`.
template <typename Xf>
void fill_words(uint64_t key, uint64_t offset, std::span<uint8_t> out, Xf xf) {
  uint8_t* p = out.data();
  size_t n = out.size();
  uint64_t w = offset / 8;
  size_t skip = offset % 8;
  if (skip != 0 && n > 0) {
    uint64_t v = xf(word(key, w++));
    size_t take = std::min<size_t>(8 - skip, n);
    std::memcpy(p, reinterpret_cast<const uint8_t*>(&v) + skip, take);
    p += take;
    n -= take;
  }
  for (; n >= 8; n -= 8, p += 8) {
    uint64_t v = xf(word(key, w++));
    std::memcpy(p, &v, 8);
  }
  if (n > 0) {
    uint64_t v = xf(word(key, w));
    std::memcpy(p, &v, n);
  }
}

// transform() of every f16 / bf16 / f32 lane of a word at once (lanes never carry).
uint64_t lanes_f16(uint64_t r) {
  constexpr uint64_t k7 = 0x0007000700070007ull;
  return (r & 0x83FF83FF83FF83FFull) | ((((r >> 10) & k7) + k7) << 10);
}
uint64_t lanes_bf16(uint64_t r) {
  constexpr uint64_t k7 = 0x0007000700070007ull, k119 = 0x0077007700770077ull;
  return (r & 0x807F807F807F807Full) | ((((r >> 7) & k7) + k119) << 7);
}
uint64_t lanes_f32(uint64_t r) {
  constexpr uint64_t k7 = 0x0000000700000007ull, k119 = 0x0000007700000077ull;
  return (r & 0x807FFFFF807FFFFFull) | ((((r >> 23) & k7) + k119) << 23);
}

// Overwrites, inside `out` (tensor bytes from `offset`), every field of `field` at
// positions j * stride + field.at with its transformed value.
void patch(uint64_t key, uint64_t offset, std::span<uint8_t> out, uint32_t stride, Field field) {
  const uint32_t width = kind_width(field.kind);
  const uint64_t end = offset + out.size();
  uint64_t j = offset < field.at + width ? 0 : (offset - field.at - width) / stride + 1;
  for (uint64_t pos = j * stride + field.at; pos < end; pos += stride) {
    uint32_t raw = 0;
    if (pos >= offset && pos + width <= end) {
      std::memcpy(&raw, out.data() + (pos - offset), width);
      uint32_t v = transform(field.kind, raw);
      std::memcpy(out.data() + (pos - offset), &v, width);
      continue;
    }
    // A field cut by the range's edge: its raw bits come from one stream word, since
    // fields are aligned to their width and widths divide 8.
    uint64_t v64 = word(key, pos / 8) >> ((pos % 8) * 8);
    raw = static_cast<uint32_t>(v64 & (width == 4 ? 0xFFFFFFFFull : (1ull << (8 * width)) - 1));
    uint32_t v = transform(field.kind, raw);
    const auto* vb = reinterpret_cast<const uint8_t*>(&v);
    for (uint32_t b = 0; b < width; ++b)
      if (pos + b >= offset && pos + b < end) out[pos + b - offset] = vb[b];
  }
}

}  // namespace

void synth_fill(uint64_t seed, std::string_view tensor_name, GgmlType type, uint64_t offset,
                std::span<uint8_t> out) {
  if (out.empty()) return;
  const uint64_t key = seed ^ fnv1a64(tensor_name);
  // Float elements are aligned to their size, so whole words transform lane by lane.
  switch (type) {
    case GgmlType::F16:
      return fill_words(key, offset, out, lanes_f16);
    case GgmlType::BF16:
      return fill_words(key, offset, out, lanes_bf16);
    case GgmlType::F32:
      return fill_words(key, offset, out, lanes_f32);
    default:
      break;
  }
  fill_words(key, offset, out, [](uint64_t v) { return v; });
  Fields fs = fields_of(type);
  for (uint32_t i = 0; i < fs.n; ++i) patch(key, offset, out, fs.stride, fs.f[i]);
}

}  // namespace moepool
