// Tests of the ggml type table: ids, names and block layouts.
#include "common/ggml_types.h"

#include <gtest/gtest.h>

#include <cctype>
#include <set>
#include <string>

namespace moepool {
namespace {

TEST(GgmlTypes, NamesRoundTrip) {
  size_t n = 0;
  const GgmlTypeTraits* all = ggml_all_types(&n);
  ASSERT_GT(n, 30u);
  std::set<std::string_view> names;
  for (size_t i = 0; i < n; ++i) {
    const GgmlTypeTraits& t = all[i];
    EXPECT_TRUE(names.insert(t.name).second) << "duplicate name " << t.name;
    EXPECT_EQ(ggml_type_name(t.type), t.name);
    auto by_name = ggml_type_by_name(t.name);
    ASSERT_TRUE(by_name) << t.name;
    EXPECT_EQ(by_name->type, t.type);
    std::string upper(t.name);
    for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    auto by_upper = ggml_type_by_name(upper);
    ASSERT_TRUE(by_upper) << upper;
    EXPECT_EQ(by_upper->type, t.type);
    auto by_id = ggml_type_traits(static_cast<uint32_t>(t.type));
    ASSERT_TRUE(by_id);
    EXPECT_EQ(by_id->name, t.name);
    EXPECT_GT(t.block_size, 0u);
    EXPECT_GT(t.type_size, 0u);
    if (i > 0) {
      EXPECT_LT(static_cast<uint32_t>(all[i - 1].type), static_cast<uint32_t>(t.type));
    }
  }
  EXPECT_FALSE(ggml_type_by_name("q4_k_m"));
  EXPECT_FALSE(ggml_type_by_name(""));
}

TEST(GgmlTypes, KnownBlockLayouts) {
  struct Want {
    const char* name;
    uint32_t type_size, block_size;
  };
  const Want wants[] = {
      {"f32", 4, 1},      {"f16", 2, 1},        {"bf16", 2, 1},     {"q4_0", 18, 32},
      {"q8_0", 34, 32},   {"q4_K", 144, 256},   {"q6_K", 210, 256}, {"mxfp4", 17, 32},
      {"tq1_0", 54, 256}, {"tq2_0", 66, 256},   {"iq1_m", 56, 256}, {"iq4_xs", 136, 256},
      {"iq4_nl", 18, 32}, {"iq2_xxs", 66, 256}, {"iq1_s", 50, 256}, {"q2_K", 84, 256},
  };
  for (const Want& w : wants) {
    auto t = ggml_type_by_name(w.name);
    ASSERT_TRUE(t) << w.name;
    EXPECT_EQ(t->type_size, w.type_size) << w.name;
    EXPECT_EQ(t->block_size, w.block_size) << w.name;
  }
  EXPECT_EQ(ggml_type_traits(12)->name, "q4_K");
  EXPECT_EQ(ggml_type_traits(39)->name, "mxfp4");
}

TEST(GgmlTypes, UnknownIdsRejected) {
  for (uint32_t id : {4u, 5u, 31u, 32u, 33u, 36u, 37u, 38u, 40u, 41u, 1000u, 0xffffffffu})
    EXPECT_FALSE(ggml_type_traits(id)) << id;
  EXPECT_EQ(ggml_type_name(static_cast<GgmlType>(4)), "?");
  EXPECT_FALSE(ggml_row_bytes(static_cast<GgmlType>(4), 32));
}

TEST(GgmlTypes, RowBytes) {
  EXPECT_EQ(ggml_row_bytes(GgmlType::Q4_K, 4096), 4096u / 256 * 144);
  EXPECT_EQ(ggml_row_bytes(GgmlType::Q8_0, 64), 68u);
  EXPECT_EQ(ggml_row_bytes(GgmlType::F32, 0), 0u);
  EXPECT_FALSE(ggml_row_bytes(GgmlType::Q4_K, 100));               // not a whole block
  EXPECT_FALSE(ggml_row_bytes(GgmlType::F64, uint64_t{1} << 62));  // 2^65 bytes
}

}  // namespace
}  // namespace moepool
