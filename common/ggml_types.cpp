#include "common/ggml_types.h"

#include <cctype>

namespace moepool {
namespace {

// Block layouts from ggml's ggml-common.h (block_q4_K: d, dmin, scales[12], qs[128] =
// 144 bytes per 256 weights, and so on).
constexpr GgmlTypeTraits kTypes[] = {
    {GgmlType::F32, "f32", 1, 4},          {GgmlType::F16, "f16", 1, 2},
    {GgmlType::Q4_0, "q4_0", 32, 18},      {GgmlType::Q4_1, "q4_1", 32, 20},
    {GgmlType::Q5_0, "q5_0", 32, 22},      {GgmlType::Q5_1, "q5_1", 32, 24},
    {GgmlType::Q8_0, "q8_0", 32, 34},      {GgmlType::Q8_1, "q8_1", 32, 36},
    {GgmlType::Q2_K, "q2_K", 256, 84},     {GgmlType::Q3_K, "q3_K", 256, 110},
    {GgmlType::Q4_K, "q4_K", 256, 144},    {GgmlType::Q5_K, "q5_K", 256, 176},
    {GgmlType::Q6_K, "q6_K", 256, 210},    {GgmlType::Q8_K, "q8_K", 256, 292},
    {GgmlType::IQ2_XXS, "iq2_xxs", 256, 66}, {GgmlType::IQ2_XS, "iq2_xs", 256, 74},
    {GgmlType::IQ3_XXS, "iq3_xxs", 256, 98}, {GgmlType::IQ1_S, "iq1_s", 256, 50},
    {GgmlType::IQ4_NL, "iq4_nl", 32, 18},  {GgmlType::IQ3_S, "iq3_s", 256, 110},
    {GgmlType::IQ2_S, "iq2_s", 256, 82},   {GgmlType::IQ4_XS, "iq4_xs", 256, 136},
    {GgmlType::I8, "i8", 1, 1},            {GgmlType::I16, "i16", 1, 2},
    {GgmlType::I32, "i32", 1, 4},          {GgmlType::I64, "i64", 1, 8},
    {GgmlType::F64, "f64", 1, 8},          {GgmlType::IQ1_M, "iq1_m", 256, 56},
    {GgmlType::BF16, "bf16", 1, 2},        {GgmlType::TQ1_0, "tq1_0", 256, 54},
    {GgmlType::TQ2_0, "tq2_0", 256, 66},   {GgmlType::MXFP4, "mxfp4", 32, 17},
};

bool iequal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

}  // namespace

std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t id) {
  for (const auto& t : kTypes)
    if (static_cast<uint32_t>(t.type) == id) return t;
  return std::nullopt;
}

std::optional<GgmlTypeTraits> ggml_type_by_name(std::string_view name) {
  for (const auto& t : kTypes)
    if (iequal(t.name, name)) return t;
  return std::nullopt;
}

std::string_view ggml_type_name(GgmlType type) {
  auto t = ggml_type_traits(static_cast<uint32_t>(type));
  return t ? t->name : "?";
}

std::optional<uint64_t> ggml_row_bytes(GgmlType type, uint64_t ne0) {
  auto t = ggml_type_traits(static_cast<uint32_t>(type));
  if (!t || ne0 % t->block_size != 0) return std::nullopt;
  uint64_t blocks = ne0 / t->block_size;
  uint64_t bytes;
  if (__builtin_mul_overflow(blocks, uint64_t{t->type_size}, &bytes)) return std::nullopt;
  return bytes;
}

const GgmlTypeTraits* ggml_all_types(size_t* count) {
  *count = sizeof(kTypes) / sizeof(kTypes[0]);
  return kTypes;
}

}  // namespace moepool
