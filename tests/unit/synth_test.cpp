// moepool-synth's library: the catalog of every synthetic model must agree with synth's
// own layout math, and the file bytes at every expert's extent with synth_fill.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <set>

#include "file_bytes.h"
#include "common/catalog.h"
#include "common/gguf.h"
#include "common/synth_model.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

class SynthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const char* tmp = std::getenv("TMPDIR");
    std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/synth_test.XXXXXX";
    ASSERT_NE(::mkdtemp(templ.data()), nullptr) << std::strerror(errno);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  SynthSpec tiny(GgmlType type, const std::string& file = "m.gguf") const {
    SynthSpec s;
    s.out = dir_ + "/" + file;
    s.layers = 2;
    s.experts = 4;
    s.embd = 256;
    s.ffn = 256;
    s.type = type;
    s.seed = 42;
    return s;
  }

  std::string dir_;
};

using moepool::testing::read_range;

std::vector<uint8_t> expected(uint64_t seed, const std::string& name, GgmlType type,
                              uint64_t offset, uint64_t bytes) {
  std::vector<uint8_t> buf(bytes);
  synth_fill(seed, name, type, offset, buf);
  return buf;
}

// Checks the catalog of `lay`'s files against the layout and the bytes of every expert.
void check_catalog(const SynthLayout& lay, const std::string& open_path) {
  const SynthSpec& s = lay.spec;
  Result<Catalog> cat = Catalog::open(open_path);
  ASSERT_TRUE(cat.ok()) << cat.status().to_string();
  EXPECT_EQ(cat->architecture(), synth_arch_name(s.arch));
  EXPECT_EQ(cat->block_count(), s.layers);
  ASSERT_EQ(cat->files().size(), lay.files.size());
  for (size_t k = 0; k < lay.files.size(); ++k) {
    EXPECT_EQ(cat->files()[k].path, fs::canonical(lay.files[k].path).string());
    EXPECT_EQ(cat->files()[k].size, lay.files[k].size);
    EXPECT_EQ(cat->files()[k].size, fs::file_size(lay.files[k].path));
    EXPECT_EQ(cat->files()[k].data_offset, lay.files[k].data_offset);
  }
  EXPECT_EQ(cat->total_bytes(), lay.total_bytes);
  ASSERT_EQ(cat->layers().size(), s.layers);
  for (uint32_t l = 0; l < s.layers; ++l) {
    const MoeLayer& ml = cat->layers()[l];
    EXPECT_EQ(ml.layer, l);
    EXPECT_EQ(ml.n_experts, s.experts);
    EXPECT_EQ(ml.expert_bytes, lay.expert_bytes_per_layer);
    std::vector<ProjKind> kinds =
        s.fused ? std::vector{ProjKind::kGateUp, ProjKind::kDown}
                : std::vector{ProjKind::kGate, ProjKind::kUp, ProjKind::kDown};
    ASSERT_EQ(ml.projections.size(), kinds.size());
    uint64_t sum = 0;
    for (size_t j = 0; j < kinds.size(); ++j) {
      const ProjTensor& p = ml.projections[j];
      SCOPED_TRACE(p.tensor_name);
      EXPECT_EQ(p.kind, kinds[j]);
      const SynthTensor* t = lay.find(p.tensor_name);
      ASSERT_NE(t, nullptr);
      ASSERT_TRUE(t->proj.has_value());
      EXPECT_EQ(*t->proj, p.kind);
      EXPECT_EQ(t->layer, static_cast<int32_t>(l));
      EXPECT_EQ(p.type, s.type);
      ASSERT_EQ(t->ne.size(), 3u);
      for (int d = 0; d < 3; ++d) EXPECT_EQ(p.ne[d], t->ne[d]) << "ne[" << d << "]";
      // The shapes the header promises: gate/up [embd, ffn(*2), E], down [ffn, embd, E].
      const bool down = p.kind == ProjKind::kDown;
      EXPECT_EQ(p.ne[0], down ? s.ffn : s.embd);
      EXPECT_EQ(p.ne[1], down ? s.embd : p.kind == ProjKind::kGateUp ? 2 * s.ffn : s.ffn);
      EXPECT_EQ(p.ne[2], s.experts);
      Result<uint64_t> eb = synth_expert_bytes(s.type, p.kind, s.embd, s.ffn);
      ASSERT_TRUE(eb.ok()) << eb.status().to_string();
      EXPECT_EQ(p.expert_bytes, *eb);
      EXPECT_EQ(t->expert_bytes, *eb);
      EXPECT_EQ(t->bytes, *eb * s.experts);
      EXPECT_EQ(p.file_index, t->file_index);
      EXPECT_EQ(p.data_offset, t->offset);
      sum += p.expert_bytes;
      const std::string& path = cat->files()[p.file_index].path;
      for (uint32_t e = 0; e < s.experts; ++e) {
        Extent x = p.expert_extent(e);
        ASSERT_EQ(read_range(path, x.offset, x.bytes),
                  expected(s.seed, p.tensor_name, p.type, uint64_t{e} * p.expert_bytes, x.bytes))
            << "expert " << e << " of layer " << l;
      }
    }
    EXPECT_EQ(sum, ml.expert_bytes);
  }
}

// Checks every tensor (expert or not) of the files against the layout and synth_fill.
void check_all_tensors(const SynthLayout& lay) {
  std::map<std::string, const SynthTensor*> want;
  for (const SynthTensor& t : lay.tensors) want[t.name] = &t;
  size_t seen = 0;
  for (size_t k = 0; k < lay.files.size(); ++k) {
    Result<GgufFile> f = GgufFile::open(lay.files[k].path);
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    EXPECT_EQ(f->data_offset(), lay.files[k].data_offset);
    EXPECT_EQ(f->tensors().size(), lay.files[k].tensor_count);
    for (const GgufTensorInfo& ti : f->tensors()) {
      SCOPED_TRACE(ti.name);
      auto it = want.find(ti.name);
      ASSERT_NE(it, want.end());
      const SynthTensor& t = *it->second;
      EXPECT_EQ(t.file_index, k);
      EXPECT_EQ(ti.type, t.type);
      ASSERT_EQ(ti.n_dims, t.ne.size());
      for (size_t d = 0; d < t.ne.size(); ++d) EXPECT_EQ(ti.ne[d], t.ne[d]);
      EXPECT_EQ(ti.data_offset, t.offset);
      EXPECT_EQ(ti.bytes, t.bytes);
      EXPECT_EQ(read_range(lay.files[k].path, t.offset, t.bytes),
                expected(lay.spec.seed, t.name, t.type, 0, t.bytes));
      ++seen;
    }
  }
  EXPECT_EQ(seen, lay.tensors.size());
}

TEST_F(SynthTest, CatalogMatchesLayoutForEveryExpertType) {
  std::vector<GgmlType> types = synth_expert_types();
  EXPECT_GE(types.size(), 26u);
  for (GgmlType type : types) {
    SCOPED_TRACE(std::string(ggml_type_name(type)));
    SynthSpec s = tiny(type, std::string(ggml_type_name(type)) + ".gguf");
    Result<SynthLayout> lay = synth_write(s);
    ASSERT_TRUE(lay.ok()) << lay.status().to_string();
    ASSERT_EQ(lay->files.size(), 1u);
    EXPECT_EQ(lay->files[0].path, s.out);
    check_catalog(*lay, s.out);
    fs::remove(s.out);
  }
}

TEST_F(SynthTest, EveryTensorHoldsSynthFillBytes) {
  for (GgmlType type : {GgmlType::Q4_K, GgmlType::MXFP4}) {
    Result<SynthLayout> lay = synth_write(tiny(type));
    ASSERT_TRUE(lay.ok()) << lay.status().to_string();
    check_all_tensors(*lay);
  }
}

TEST_F(SynthTest, LayoutWithoutWritingEqualsWrittenLayout) {
  SynthSpec s = tiny(GgmlType::Q8_0);
  s.split = 2;
  Result<SynthLayout> planned = synth_layout(s);
  ASSERT_TRUE(planned.ok()) << planned.status().to_string();
  for (const SynthFile& f : planned->files) EXPECT_FALSE(fs::exists(f.path)) << f.path;
  Result<SynthLayout> written = synth_write(s);
  ASSERT_TRUE(written.ok()) << written.status().to_string();
  ASSERT_EQ(planned->tensors.size(), written->tensors.size());
  for (size_t i = 0; i < planned->tensors.size(); ++i) {
    EXPECT_EQ(planned->tensors[i].name, written->tensors[i].name);
    EXPECT_EQ(planned->tensors[i].offset, written->tensors[i].offset);
    EXPECT_EQ(planned->tensors[i].file_index, written->tensors[i].file_index);
  }
  EXPECT_EQ(planned->total_bytes, written->total_bytes);
}

TEST_F(SynthTest, SplitModelHasTheSameExpertsAndBytes) {
  SynthSpec one = tiny(GgmlType::Q4_K, "one.gguf");
  SynthSpec three = tiny(GgmlType::Q4_K, "three.gguf");
  three.split = 3;
  Result<SynthLayout> a = synth_write(one);
  Result<SynthLayout> b = synth_write(three);
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  ASSERT_TRUE(b.ok()) << b.status().to_string();
  ASSERT_EQ(b->files.size(), 3u);
  for (uint32_t k = 0; k < 3; ++k) {
    EXPECT_EQ(b->files[k].path, synth_split_path(three.out, k, 3));
    EXPECT_GT(b->files[k].tensor_count, 0u);
    Result<GgufFile> f = GgufFile::open(b->files[k].path);
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    // u16, as llama.cpp's gguf-split writes them and its loader reads them.
    EXPECT_EQ(f->get_u16("split.no"), uint16_t(k));
    EXPECT_EQ(f->get_u16("split.count"), uint16_t{3});
    EXPECT_EQ(f->get_i32("split.tensors.count"), static_cast<int32_t>(b->tensors.size()));
    EXPECT_EQ(f->get_string("general.architecture").has_value(), k == 0);
  }
  EXPECT_FALSE(fs::exists(three.out));
  // Opening any part opens the whole model.
  check_catalog(*b, b->files[1].path);
  check_all_tensors(*b);
  // Same tensors in the same order, same contents, only the files differ.
  ASSERT_EQ(a->tensors.size(), b->tensors.size());
  std::set<uint32_t> parts_with_experts;
  for (size_t i = 0; i < a->tensors.size(); ++i) {
    EXPECT_EQ(a->tensors[i].name, b->tensors[i].name);
    EXPECT_EQ(a->tensors[i].bytes, b->tensors[i].bytes);
    if (b->tensors[i].proj) parts_with_experts.insert(b->tensors[i].file_index);
    if (i > 0) {
      EXPECT_GE(b->tensors[i].file_index, b->tensors[i - 1].file_index);
    }
    const SynthTensor& ta = a->tensors[i];
    const SynthTensor& tb = b->tensors[i];
    if (ta.proj) {
      EXPECT_EQ(read_range(a->files[0].path, ta.offset, ta.bytes),
                read_range(b->files[tb.file_index].path, tb.offset, tb.bytes));
    }
  }
  EXPECT_EQ(a->expert_bytes_per_layer, b->expert_bytes_per_layer);
  EXPECT_EQ(a->expert_tensor_bytes, b->expert_tensor_bytes);
  EXPECT_GE(parts_with_experts.size(), 2u);  // experts spread over the parts
}

TEST_F(SynthTest, FusedGateUp) {
  SynthSpec s = tiny(GgmlType::Q8_0);
  s.fused = true;
  Result<SynthLayout> lay = synth_write(s);
  ASSERT_TRUE(lay.ok()) << lay.status().to_string();
  EXPECT_EQ(lay->find("blk.0.ffn_gate_exps.weight"), nullptr);
  EXPECT_EQ(lay->find("blk.0.ffn_up_exps.weight"), nullptr);
  const SynthTensor* gu = lay->find("blk.1.ffn_gate_up_exps.weight");
  ASSERT_NE(gu, nullptr);
  EXPECT_EQ(gu->ne, (std::vector<uint64_t>{256, 512, 4}));
  EXPECT_EQ(lay->expert_bytes_per_layer,
            *synth_expert_bytes(s.type, ProjKind::kGate, s.embd, s.ffn) * 3);
  check_catalog(*lay, s.out);
}

TEST_F(SynthTest, Deepseek2Architecture) {
  SynthSpec s = tiny(GgmlType::Q6_K);
  s.arch = SynthArch::kDeepseek2;
  s.experts = 16;
  s.fused = true;
  s.split = 2;
  Result<SynthLayout> lay = synth_write(s);
  ASSERT_TRUE(lay.ok()) << lay.status().to_string();
  EXPECT_NE(lay->find("blk.0.attn_kv_a_mqa.weight"), nullptr);
  EXPECT_EQ(lay->find("blk.0.attn_k.weight"), nullptr);
  check_catalog(*lay, lay->files[0].path);
  Result<GgufFile> f = GgufFile::open(lay->files[0].path);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->get_string("general.architecture"), "deepseek2");
  EXPECT_EQ(f->get_u32("deepseek2.expert_count"), 16u);
  EXPECT_EQ(f->get_u32("deepseek2.expert_used_count"), 8u);
}

TEST_F(SynthTest, MetadataDescribesTheModel) {
  SynthSpec s = tiny(GgmlType::F16);
  s.seed = 0xDEADBEEFCAFEull;
  s.top_k = 2;
  Result<SynthLayout> lay = synth_write(s);
  ASSERT_TRUE(lay.ok()) << lay.status().to_string();
  EXPECT_EQ(lay->spec.top_k, 2u);
  Result<GgufFile> f = GgufFile::open(s.out);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->get_string("general.architecture"), "qwen2moe");
  EXPECT_EQ(f->get_u32("qwen2moe.block_count"), 2u);
  EXPECT_EQ(f->get_u32("qwen2moe.embedding_length"), 256u);
  EXPECT_EQ(f->get_u32("qwen2moe.expert_feed_forward_length"), 256u);
  EXPECT_EQ(f->get_u32("qwen2moe.expert_count"), 4u);
  EXPECT_EQ(f->get_u32("qwen2moe.expert_used_count"), 2u);
  EXPECT_TRUE(f->get_u32("qwen2moe.attention.head_count").has_value());
  EXPECT_TRUE(f->get_f32("qwen2moe.attention.layer_norm_rms_epsilon").has_value());
  EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "no_vocab");
  EXPECT_EQ(f->get_u64("moepool.synth.seed"), s.seed);
  for (const char* name :
       {"token_embd.weight", "output.weight", "output_norm.weight", "blk.1.attn_q.weight",
        "blk.1.ffn_gate_inp.weight", "blk.1.ffn_down_shexp.weight"}) {
    const GgufTensorInfo* t = f->find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_TRUE(t->type == GgmlType::F32 || t->type == GgmlType::F16) << name;
    EXPECT_EQ(t->ne[0], name == std::string("blk.1.ffn_down_shexp.weight") ? s.ffn : s.embd);
  }
  EXPECT_EQ(f->find_tensor("blk.1.ffn_gate_inp.weight")->ne[1], 4u);  // router: one per expert
}

TEST_F(SynthTest, DefaultTopKIsAtMostEight) {
  SynthSpec s = tiny(GgmlType::Q4_0);
  s.experts = 3;
  EXPECT_EQ(synth_layout(s)->spec.top_k, 3u);
  s.experts = 64;
  EXPECT_EQ(synth_layout(s)->spec.top_k, 8u);
}

void expect_invalid(const SynthSpec& s, const std::string& needle) {
  Status st = synth_validate(s);
  ASSERT_FALSE(st.ok()) << "accepted, expected '" << needle << "'";
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
  Result<SynthLayout> lay = synth_layout(s);
  EXPECT_FALSE(lay.ok());
  Result<SynthLayout> w = synth_write(s);
  EXPECT_FALSE(w.ok());
  if (!s.out.empty()) {
    EXPECT_FALSE(fs::exists(s.out)) << "wrote " << s.out << " anyway";
  }
}

TEST_F(SynthTest, RejectsInvalidSpecs) {
  const SynthSpec good = tiny(GgmlType::Q4_K);
  ASSERT_TRUE(synth_validate(good).ok());
  SynthSpec s = good;
  s.experts = 0;
  expect_invalid(s, "experts 0");
  s = good;
  s.experts = kSynthMaxExperts + 1;
  expect_invalid(s, "experts");
  s = good;
  s.layers = 0;
  expect_invalid(s, "layers 0");
  s = good;
  s.ffn = 500;
  expect_invalid(s, "ffn 500 is not a multiple of the q4_K block size 256");
  s = good;
  s.embd = 128;
  expect_invalid(s, "embd 128 is not a multiple");
  s = good;
  s.embd = 0;
  expect_invalid(s, "embd 0");
  s = good;
  s.type = GgmlType::Q8_0;
  s.ffn = 48;
  expect_invalid(s, "block size 32");
  s = good;
  s.type = GgmlType::Q8_1;
  expect_invalid(s, "q8_1 cannot hold expert weights");
  s = good;
  s.type = GgmlType::I32;
  expect_invalid(s, "cannot hold expert weights");
  s = good;
  s.type = static_cast<GgmlType>(4);  // a retired id
  expect_invalid(s, "cannot hold expert weights");
  s = good;
  s.top_k = 5;
  expect_invalid(s, "top-k 5");
  s = good;
  s.split = 0;
  expect_invalid(s, "split 0");
  s = good;
  s.split = 1000;
  expect_invalid(s, "split 1000 is more than");
  s = good;
  s.out.clear();
  expect_invalid(s, "out");
  s = good;
  s.layers = kSynthMaxLayers;
  s.experts = kSynthMaxExperts;
  s.embd = s.ffn = kSynthMaxDim;
  s.type = GgmlType::F32;
  expect_invalid(s, "1 PiB");
}

TEST(SynthFill, AnyRangeEqualsTheSameBytesOfTheWhole) {
  for (GgmlType type : synth_expert_types()) {
    SCOPED_TRACE(std::string(ggml_type_name(type)));
    const uint64_t n = 3000;
    std::vector<uint8_t> whole = expected(7, "blk.0.ffn_up_exps.weight", type, 0, n);
    for (uint64_t off : {0ull, 1ull, 2ull, 3ull, 7ull, 17ull, 143ull, 291ull, 1001ull}) {
      for (uint64_t len : {1ull, 2ull, 5ull, 8ull, 33ull, 290ull, 1500ull}) {
        if (off + len > n) continue;
        std::vector<uint8_t> part = expected(7, "blk.0.ffn_up_exps.weight", type, off, len);
        ASSERT_TRUE(std::equal(part.begin(), part.end(), whole.begin() + off))
            << "offset " << off << " length " << len;
      }
    }
  }
}

TEST(SynthFill, VariesWithSeedNameAndPosition) {
  auto a = expected(1, "blk.0.ffn_gate_exps.weight", GgmlType::Q4_K, 0, 4096);
  auto b = expected(2, "blk.0.ffn_gate_exps.weight", GgmlType::Q4_K, 0, 4096);
  auto c = expected(1, "blk.1.ffn_gate_exps.weight", GgmlType::Q4_K, 0, 4096);
  auto d = expected(1, "blk.0.ffn_gate_exps.weight", GgmlType::Q4_K, 4096, 4096);
  EXPECT_NE(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  EXPECT_EQ(a, expected(1, "blk.0.ffn_gate_exps.weight", GgmlType::Q4_K, 0, 4096));
  // Not constant within a tensor: most 8-byte words differ from their neighbour.
  int same = 0;
  for (size_t i = 8; i + 8 <= a.size(); i += 8) same += std::memcmp(&a[i], &a[i - 8], 8) == 0;
  EXPECT_LT(same, 4);
}

float half_to_float(uint16_t h) {
  const uint32_t sign = (h >> 15) & 1, exp = (h >> 10) & 0x1F, mant = h & 0x3FF;
  float v = exp == 0 ? std::ldexp(static_cast<float>(mant), -24)
            : exp == 31
                ? (mant ? NAN : INFINITY)
                : std::ldexp(1.0f + static_cast<float>(mant) / 1024.0f, static_cast<int>(exp) - 15);
  return sign ? -v : v;
}

uint16_t u16_at(const std::vector<uint8_t>& b, size_t i) {
  uint16_t v;
  std::memcpy(&v, &b[i], 2);
  return v;
}

TEST(SynthFill, FloatWeightsAreSmallAndFinite) {
  const size_t n = 1 << 16;
  auto f16 = expected(3, "t", GgmlType::F16, 0, n);
  auto bf16 = expected(3, "t", GgmlType::BF16, 0, n);
  auto f32 = expected(3, "t", GgmlType::F32, 0, n);
  for (size_t i = 0; i < n; i += 2) {
    float h = half_to_float(u16_at(f16, i));
    ASSERT_TRUE(std::isfinite(h) && std::fabs(h) >= 0x1p-8f && std::fabs(h) < 1.0f) << h;
    float b = std::bit_cast<float>(uint32_t{u16_at(bf16, i)} << 16);
    ASSERT_TRUE(std::isfinite(b) && std::fabs(b) >= 0x1p-8f && std::fabs(b) < 1.0f) << b;
  }
  bool negative = false;
  for (size_t i = 0; i < n; i += 4) {
    float v;
    std::memcpy(&v, &f32[i], 4);
    ASSERT_TRUE(std::isfinite(v) && std::fabs(v) >= 0x1p-8f && std::fabs(v) < 1.0f) << v;
    negative |= v < 0;
  }
  EXPECT_TRUE(negative);
}

TEST(SynthFill, QuantScalesAreSmallPositiveAndFinite) {
  // Byte offsets of f16 scale fields in each block (ggml-common.h), checked independently
  // of synth_fill's own table.
  const std::map<GgmlType, std::vector<uint32_t>> f16_fields = {
      {GgmlType::Q4_0, {0}},    {GgmlType::Q4_1, {0, 2}}, {GgmlType::Q5_0, {0}},
      {GgmlType::Q5_1, {0, 2}}, {GgmlType::Q8_0, {0}},    {GgmlType::Q2_K, {80, 82}},
      {GgmlType::Q3_K, {108}},  {GgmlType::Q4_K, {0, 2}}, {GgmlType::Q5_K, {0, 2}},
      {GgmlType::Q6_K, {208}},  {GgmlType::IQ2_XXS, {0}}, {GgmlType::IQ2_XS, {0}},
      {GgmlType::IQ3_XXS, {0}}, {GgmlType::IQ1_S, {0}},   {GgmlType::IQ4_NL, {0}},
      {GgmlType::IQ3_S, {0}},   {GgmlType::IQ2_S, {0}},   {GgmlType::IQ4_XS, {0}},
      {GgmlType::TQ1_0, {52}},  {GgmlType::TQ2_0, {64}},
  };
  for (const auto& [type, fields] : f16_fields) {
    SCOPED_TRACE(std::string(ggml_type_name(type)));
    const uint32_t bs = ggml_type_traits(static_cast<uint32_t>(type))->type_size;
    auto b = expected(9, "blk.3.ffn_down_exps.weight", type, 0, bs * 64);
    for (uint32_t blk = 0; blk < 64; ++blk)
      for (uint32_t at : fields) {
        float d = half_to_float(u16_at(b, blk * bs + at));
        ASSERT_TRUE(std::isfinite(d) && d > 0 && d < 0.125f) << "block " << blk << ": " << d;
      }
  }
  auto q8k = expected(9, "x", GgmlType::Q8_K, 0, 292 * 16);
  for (uint32_t blk = 0; blk < 16; ++blk) {
    float d;
    std::memcpy(&d, &q8k[blk * 292], 4);
    ASSERT_TRUE(std::isfinite(d) && d > 0 && d < 0.125f) << d;
  }
  auto mx = expected(9, "x", GgmlType::MXFP4, 0, 17 * 64);
  for (uint32_t blk = 0; blk < 64; ++blk) {
    uint8_t e = mx[blk * 17];
    ASSERT_TRUE(e >= 119 && e <= 126) << int{e};  // E8M0: 2^-8 .. 2^-1
  }
  auto iq1m = expected(9, "x", GgmlType::IQ1_M, 0, 56 * 64);
  for (uint32_t blk = 0; blk < 64; ++blk) {
    uint16_t sc[4];
    std::memcpy(sc, &iq1m[blk * 56 + 48], 8);
    uint16_t packed = static_cast<uint16_t>((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) |
                                            ((sc[2] >> 4) & 0x0F00) | (sc[3] & 0xF000));
    float d = half_to_float(packed);
    ASSERT_TRUE(std::isfinite(d) && d > 0 && d < 1.0f) << d;
  }
}

TEST(SynthSplitPath, NamesPartsLikeGgufSplit) {
  EXPECT_EQ(synth_split_path("/x/model.gguf", 0, 3), "/x/model-00001-of-00003.gguf");
  EXPECT_EQ(synth_split_path("/x/model.gguf", 2, 3), "/x/model-00003-of-00003.gguf");
  EXPECT_EQ(synth_split_path("model", 9, 12), "model-00010-of-00012.gguf");
}

TEST(SynthTypes, ExpertTypesAreTheStorageTypes) {
  std::set<std::string> names;
  for (GgmlType t : synth_expert_types()) names.insert(std::string(ggml_type_name(t)));
  for (const char* want :
       {"f32",    "f16",   "bf16",  "q4_0",   "q4_1",  "q5_0",    "q5_1",   "q8_0",    "q2_K",
        "q3_K",   "q4_K",  "q5_K",  "q6_K",   "q8_K",  "iq2_xxs", "iq2_xs", "iq3_xxs", "iq1_s",
        "iq4_nl", "iq3_s", "iq2_s", "iq4_xs", "iq1_m", "tq1_0",   "tq2_0",  "mxfp4"})
    EXPECT_TRUE(names.count(want)) << want;
  for (const char* not_expert : {"q8_1", "i8", "i16", "i32", "i64", "f64"})
    EXPECT_FALSE(names.count(not_expert)) << not_expert;
}

}  // namespace
}  // namespace moepool
