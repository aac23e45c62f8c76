// ggml tensor types as stored in GGUF files: their numeric ids, names and block layout
// (elements per block, bytes per block). A row of ne0 elements of type t takes
// ne0 / block_size(t) * type_size(t) bytes; ne0 must be a multiple of the block size.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace moepool {

// Values are ggml's `enum ggml_type`; gaps are ids ggml retired.
enum class GgmlType : uint32_t {
  F32 = 0, F16 = 1, Q4_0 = 2, Q4_1 = 3, Q5_0 = 6, Q5_1 = 7, Q8_0 = 8, Q8_1 = 9,
  Q2_K = 10, Q3_K = 11, Q4_K = 12, Q5_K = 13, Q6_K = 14, Q8_K = 15,
  IQ2_XXS = 16, IQ2_XS = 17, IQ3_XXS = 18, IQ1_S = 19, IQ4_NL = 20, IQ3_S = 21,
  IQ2_S = 22, IQ4_XS = 23, I8 = 24, I16 = 25, I32 = 26, I64 = 27, F64 = 28,
  IQ1_M = 29, BF16 = 30, TQ1_0 = 34, TQ2_0 = 35, MXFP4 = 39,
};

struct GgmlTypeTraits {
  GgmlType type;
  std::string_view name;  // ggml's spelling: "f16", "q4_K", "iq2_xxs", "mxfp4"
  uint32_t block_size;    // elements per block
  uint32_t type_size;     // bytes per block
};

// Returns the traits of a type id read from a file, or nullopt for an unknown/retired id.
std::optional<GgmlTypeTraits> ggml_type_traits(uint32_t id);
// Returns the traits of a type by ggml's name (case-insensitive), or nullopt.
std::optional<GgmlTypeTraits> ggml_type_by_name(std::string_view name);
// Returns the name of a known type ("?" for an unknown one).
std::string_view ggml_type_name(GgmlType type);
// Returns the bytes of a row of `ne0` elements, or nullopt if ne0 is not a multiple of
// the block size or the product overflows.
std::optional<uint64_t> ggml_row_bytes(GgmlType type, uint64_t ne0);
// Every type moepool knows, in id order (for tests that cover all of them).
const GgmlTypeTraits* ggml_all_types(size_t* count);

}  // namespace moepool
