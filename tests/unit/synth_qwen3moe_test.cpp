// moepool-synth's qwen3moe models: the metadata keys and tensor shapes llama.cpp's qwen3moe
// loader requires (src/models/qwen3moe.cpp, llama-model.cpp load_hparams, llama-vocab.cpp
// no_vocab), written out here independently of synth's own plan; the catalog's view of
// them; every byte recomputable with synth_fill; the optional expert bias/scale tensors.
// None of this needs llama.cpp itself.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "file_bytes.h"
#include "common/catalog.h"
#include "common/gguf.h"
#include "common/synth_model.h"
#include "tests/unit/temp_dir.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kVocab = 256;

SynthSpec qwen3(const TempDir& dir, GgmlType type, const std::string& file = "q3.gguf") {
  SynthSpec s = synth_default_spec(SynthArch::kQwen3Moe);
  s.out = dir.file(file);
  s.type = type;
  s.layers = 2;
  s.seed = 1234;
  return s;
}

using moepool::testing::read_range;

// name -> (type, shape): every tensor llama.cpp's qwen3moe loader creates, with the shapes
// it checks: q [embd, n_head*hd], k/v [embd, n_kv*hd], o [n_head*hd, embd], q/k norms [hd].
std::map<std::string, std::pair<GgmlType, std::vector<uint64_t>>> llama_cpp_tensors(
    const SynthSpec& s, uint64_t n_head, uint64_t n_kv, uint64_t hd) {
  const GgmlType f32 = GgmlType::F32, f16 = GgmlType::F16;
  const uint64_t e = s.embd, f = s.ffn, n = s.experts;
  std::map<std::string, std::pair<GgmlType, std::vector<uint64_t>>> t = {
      {"token_embd.weight", {f16, {e, kVocab}}},
      {"output_norm.weight", {f32, {e}}},
      {"output.weight", {f16, {e, kVocab}}},
  };
  for (uint32_t l = 0; l < s.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    t[b + "attn_norm.weight"] = {f32, {e}};
    t[b + "attn_q.weight"] = {f16, {e, n_head * hd}};
    t[b + "attn_k.weight"] = {f16, {e, n_kv * hd}};
    t[b + "attn_v.weight"] = {f16, {e, n_kv * hd}};
    t[b + "attn_output.weight"] = {f16, {n_head * hd, e}};
    t[b + "attn_q_norm.weight"] = {f32, {hd}};
    t[b + "attn_k_norm.weight"] = {f32, {hd}};
    t[b + "ffn_norm.weight"] = {f32, {e}};
    t[b + "ffn_gate_inp.weight"] = {f32, {e, n}};
    t[b + "ffn_gate_exps.weight"] = {s.type, {e, f, n}};
    t[b + "ffn_up_exps.weight"] = {s.type, {e, f, n}};
    t[b + "ffn_down_exps.weight"] = {s.type, {f, e, n}};
  }
  return t;
}

std::vector<uint64_t> shape_of(const GgufTensorInfo& t) {
  return std::vector<uint64_t>(t.ne, t.ne + t.n_dims);
}

TEST(SynthQwen3Moe, ArchNameRoundTrips) {
  EXPECT_EQ(synth_arch_name(SynthArch::kQwen3Moe), "qwen3moe");
  EXPECT_EQ(synth_arch_by_name("qwen3moe"), SynthArch::kQwen3Moe);
  EXPECT_EQ(synth_arch_by_name("qwen3"), std::nullopt);
}

TEST(SynthQwen3Moe, DefaultShapeHas4KiBExpertProjections) {
  const SynthSpec d = synth_default_spec(SynthArch::kQwen3Moe);
  EXPECT_EQ(d.arch, SynthArch::kQwen3Moe);
  EXPECT_EQ(d.layers, 4u);
  EXPECT_EQ(d.experts, 8u);
  EXPECT_EQ(d.embd, 256u);
  EXPECT_EQ(d.ffn, 256u);
  EXPECT_EQ(d.type, GgmlType::Q4_K);
  EXPECT_EQ(d.top_k, 0u);
  EXPECT_EQ(synth_default_top_k(SynthArch::kQwen3Moe, d.experts), 2u);
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_K}) {
    for (ProjKind kind : {ProjKind::kGate, ProjKind::kUp, ProjKind::kDown}) {
      Result<uint64_t> b = synth_expert_bytes(type, kind, d.embd, d.ffn);
      ASSERT_TRUE(b.ok());
      EXPECT_EQ(*b % 4096, 0u) << ggml_type_name(type) << " " << proj_kind_name(kind) << " " << *b;
    }
  }
}

TEST(SynthQwen3Moe, DefaultTopK) {
  const SynthArch q = SynthArch::kQwen3Moe;
  EXPECT_EQ(synth_default_top_k(q, 1), 1u);
  EXPECT_EQ(synth_default_top_k(q, 8), 2u);
  EXPECT_EQ(synth_default_top_k(q, 16), 4u);
  EXPECT_EQ(synth_default_top_k(q, 128), 8u);
  EXPECT_EQ(synth_default_top_k(SynthArch::kQwen2Moe, 64), 8u);
  EXPECT_EQ(synth_default_top_k(SynthArch::kQwen2Moe, 3), 3u);
}

TEST(SynthQwen3Moe, Heads) {
  SynthHeads h = synth_qwen3moe_heads(256);
  EXPECT_EQ(h.head_dim, 64u);
  EXPECT_EQ(h.n_head, 4u);
  EXPECT_EQ(h.n_head_kv, 2u);
  h = synth_qwen3moe_heads(96);
  EXPECT_EQ(h.head_dim, 32u);
  EXPECT_EQ(h.n_head, 3u);
  EXPECT_EQ(h.n_head_kv, 3u);
  h = synth_qwen3moe_heads(2048);
  EXPECT_EQ(h.n_head * h.head_dim, 2048u);
  EXPECT_EQ(h.n_head_kv * 2, h.n_head);
}

TEST(SynthQwen3Moe, MetadataIsWhatLlamaCppReads) {
  TempDir dir("synth_qwen3moe");
  SynthSpec s = qwen3(dir, GgmlType::Q8_0);
  s.experts = 16;
  s.top_k = 4;
  s.embd = 512;
  Result<SynthLayout> lay = synth_write(s);
  ASSERT_TRUE(lay.ok()) << lay.status().to_string();
  Result<GgufFile> f = GgufFile::open(s.out);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->get_string("general.architecture"), "qwen3moe");
  EXPECT_TRUE(f->get_string("general.name").has_value());
  EXPECT_EQ(f->get_u32("qwen3moe.context_length"), 4096u);
  EXPECT_EQ(f->get_u32("qwen3moe.embedding_length"), 512u);
  EXPECT_EQ(f->get_u32("qwen3moe.block_count"), 2u);
  EXPECT_EQ(f->get_u32("qwen3moe.attention.head_count"), 8u);
  EXPECT_EQ(f->get_u32("qwen3moe.attention.head_count_kv"), 4u);
  EXPECT_EQ(f->get_u32("qwen3moe.attention.key_length"), 64u);
  EXPECT_EQ(f->get_u32("qwen3moe.attention.value_length"), 64u);
  ASSERT_TRUE(f->get_f32("qwen3moe.attention.layer_norm_rms_epsilon").has_value());
  EXPECT_GT(*f->get_f32("qwen3moe.attention.layer_norm_rms_epsilon"), 0.0f);
  EXPECT_EQ(f->get_u32("qwen3moe.expert_count"), 16u);
  EXPECT_EQ(f->get_u32("qwen3moe.expert_used_count"), 4u);
  EXPECT_EQ(f->get_u32("qwen3moe.expert_feed_forward_length"), 256u);
  EXPECT_EQ(f->get_u32("qwen3moe.vocab_size"), kVocab);
  EXPECT_EQ(f->get_f32("qwen3moe.rope.freq_base"), 1000000.0f);
  EXPECT_EQ(f->get_string("tokenizer.ggml.model"), "no_vocab");
  EXPECT_EQ(f->get_u64("moepool.synth.seed"), s.seed);
  // qwen3moe has no shared experts and no deepseek2 attention.
  EXPECT_EQ(f->find("qwen3moe.expert_shared_feed_forward_length"), nullptr);
  EXPECT_EQ(f->find("qwen3moe.attention.kv_lora_rank"), nullptr);
  EXPECT_EQ(f->alignment(), 32u);
}

TEST(SynthQwen3Moe, TensorsAreExactlyWhatLlamaCppLoads) {
  TempDir dir("synth_qwen3moe");
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_K}) {
    SCOPED_TRACE(std::string(ggml_type_name(type)));
    SynthSpec s = qwen3(dir, type, std::string(ggml_type_name(type)) + ".gguf");
    s.layers = 3;
    Result<SynthLayout> lay = synth_write(s);
    ASSERT_TRUE(lay.ok()) << lay.status().to_string();
    Result<GgufFile> f = GgufFile::open(s.out);
    ASSERT_TRUE(f.ok()) << f.status().to_string();
    auto want = llama_cpp_tensors(s, 4, 2, 64);
    EXPECT_EQ(f->tensors().size(), want.size());
    EXPECT_EQ(want.size(), 3u + 12u * s.layers);
    for (const GgufTensorInfo& t : f->tensors()) {
      auto it = want.find(t.name);
      ASSERT_NE(it, want.end()) << "unexpected tensor " << t.name;
      EXPECT_EQ(t.type, it->second.first) << t.name;
      EXPECT_EQ(shape_of(t), it->second.second) << t.name;
      EXPECT_EQ(t.data_offset % 32, 0u) << t.name;
      const SynthTensor* st = lay->find(t.name);
      ASSERT_NE(st, nullptr) << t.name;
      EXPECT_EQ(st->offset, t.data_offset) << t.name;
      EXPECT_EQ(st->bytes, t.bytes) << t.name;
    }
  }
}

TEST(SynthQwen3Moe, CatalogSeesEveryMoeLayer) {
  TempDir dir("synth_qwen3moe");
  for (GgmlType type : {GgmlType::F32, GgmlType::F16, GgmlType::Q8_0, GgmlType::Q4_K}) {
    SCOPED_TRACE(std::string(ggml_type_name(type)));
    SynthSpec s = qwen3(dir, type, std::string(ggml_type_name(type)) + ".gguf");
    s.layers = 3;
    s.experts = 16;
    Result<SynthLayout> lay = synth_write(s);
    ASSERT_TRUE(lay.ok()) << lay.status().to_string();
    Result<Catalog> cat = Catalog::open(s.out);
    ASSERT_TRUE(cat.ok()) << cat.status().to_string();
    EXPECT_EQ(cat->architecture(), "qwen3moe");
    EXPECT_EQ(cat->block_count(), 3u);
    ASSERT_EQ(cat->layers().size(), 3u);
    for (uint32_t l = 0; l < 3; ++l) {
      const MoeLayer& ml = cat->layers()[l];
      EXPECT_EQ(ml.layer, l);
      EXPECT_EQ(ml.n_experts, 16u);
      EXPECT_EQ(ml.expert_bytes, lay->expert_bytes_per_layer);
      ASSERT_EQ(ml.projections.size(), 3u);
      const ProjKind kinds[] = {ProjKind::kGate, ProjKind::kUp, ProjKind::kDown};
      for (size_t j = 0; j < 3; ++j) {
        const ProjTensor& p = ml.projections[j];
        EXPECT_EQ(p.kind, kinds[j]);
        EXPECT_EQ(p.type, type);
        EXPECT_EQ(p.expert_bytes % 4096, 0u) << p.tensor_name;
        EXPECT_EQ(p.expert_bytes, *synth_expert_bytes(type, p.kind, s.embd, s.ffn));
        const SynthTensor* t = lay->find(p.tensor_name);
        ASSERT_NE(t, nullptr) << p.tensor_name;
        EXPECT_EQ(p.data_offset, t->offset);
      }
    }
  }
}

// Every byte of every tensor (experts and the rest) equals synth_fill's.
TEST(SynthQwen3Moe, EveryByteIsSynthFill) {
  TempDir dir("synth_qwen3moe");
  SynthSpec s = qwen3(dir, GgmlType::Q4_K);
  s.expert_bias = s.expert_scale = true;
  Result<SynthLayout> lay = synth_write(s);
  ASSERT_TRUE(lay.ok()) << lay.status().to_string();
  Result<GgufFile> f = GgufFile::open(s.out);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  ASSERT_EQ(f->file_size(), fs::file_size(s.out));
  for (const GgufTensorInfo& t : f->tensors()) {
    std::vector<uint8_t> want(t.bytes);
    synth_fill(s.seed, t.name, t.type, 0, want);
    EXPECT_EQ(read_range(s.out, t.data_offset, t.bytes), want) << t.name;
  }
}

TEST(SynthQwen3Moe, ExpertBiasAddsBiasTensorsTheCatalogIgnores) {
  TempDir dir("synth_qwen3moe");
  SynthSpec plain = qwen3(dir, GgmlType::F16, "plain.gguf");
  SynthSpec biased = plain;
  biased.out = dir.file("bias.gguf");
  biased.expert_bias = true;
  Result<SynthLayout> a = synth_write(plain);
  Result<SynthLayout> b = synth_write(biased);
  ASSERT_TRUE(a.ok() && b.ok());
  Result<GgufFile> f = GgufFile::open(biased.out);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->tensors().size(), 3u + 15u * biased.layers);
  for (uint32_t l = 0; l < biased.layers; ++l) {
    const std::string b = "blk." + std::to_string(l) + ".";
    for (const char* proj : {"gate", "up", "down"}) {
      const std::string name = b + "ffn_" + proj + "_exps.bias";
      const GgufTensorInfo* t = f->find_tensor(name);
      ASSERT_NE(t, nullptr) << name;
      EXPECT_EQ(t->type, GgmlType::F32);
      const uint64_t rows = std::string(proj) == "down" ? biased.embd : biased.ffn;
      EXPECT_EQ(shape_of(*t), (std::vector<uint64_t>{rows, biased.experts})) << name;
      EXPECT_EQ(f->find_tensor(b + "ffn_" + proj + "_exps.scale"), nullptr);
    }
  }
  // The catalog opens it and sees the same experts as without biases.
  Result<Catalog> ca = Catalog::open(plain.out);
  Result<Catalog> cb = Catalog::open(biased.out);
  ASSERT_TRUE(ca.ok() && cb.ok()) << cb.status().to_string();
  ASSERT_EQ(cb->layers().size(), ca->layers().size());
  for (size_t l = 0; l < ca->layers().size(); ++l) {
    ASSERT_EQ(cb->layers()[l].projections.size(), 3u);
    EXPECT_EQ(cb->layers()[l].expert_bytes, ca->layers()[l].expert_bytes);
    for (const ProjTensor& p : cb->layers()[l].projections)
      EXPECT_EQ(p.tensor_name.find(".bias"), std::string::npos);
  }
  // Biases leave the expert bytes as they are (same tensor names, same fill).
  EXPECT_EQ(b->expert_bytes_per_layer, a->expert_bytes_per_layer);
  EXPECT_EQ(b->expert_tensor_bytes, a->expert_tensor_bytes);
}

TEST(SynthQwen3Moe, ExpertScaleAddsScaleTensors) {
  TempDir dir("synth_qwen3moe");
  SynthSpec s = qwen3(dir, GgmlType::Q8_0);
  s.expert_scale = true;
  ASSERT_TRUE(synth_write(s).ok());
  Result<GgufFile> f = GgufFile::open(s.out);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  for (const char* proj : {"gate", "up", "down"}) {
    const std::string name = std::string("blk.1.ffn_") + proj + "_exps.scale";
    const GgufTensorInfo* t = f->find_tensor(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(t->type, GgmlType::F32);
    EXPECT_EQ(shape_of(*t), std::vector<uint64_t>{s.experts});
  }
  EXPECT_EQ(f->find_tensor("blk.1.ffn_gate_exps.bias"), nullptr);
  Result<Catalog> cat = Catalog::open(s.out);
  ASSERT_TRUE(cat.ok()) << cat.status().to_string();
  EXPECT_EQ(cat->layers().size(), s.layers);
}

TEST(SynthQwen3Moe, SplitModelIsOneCatalog) {
  TempDir dir("synth_qwen3moe");
  SynthSpec s = qwen3(dir, GgmlType::Q4_K);
  s.split = 3;
  Result<SynthLayout> lay = synth_write(s);
  ASSERT_TRUE(lay.ok()) << lay.status().to_string();
  ASSERT_EQ(lay->files.size(), 3u);
  Result<Catalog> cat = Catalog::open(lay->files[1].path);
  ASSERT_TRUE(cat.ok()) << cat.status().to_string();
  EXPECT_EQ(cat->files().size(), 3u);
  EXPECT_EQ(cat->layers().size(), s.layers);
  EXPECT_EQ(cat->total_bytes(), lay->total_bytes);
}

// A Qwen3-30B-A3B-sized model's size math, without writing it.
TEST(SynthQwen3Moe, MultiGiBLayoutMath) {
  TempDir dir("synth_qwen3moe");
  SynthSpec s = synth_default_spec(SynthArch::kQwen3Moe);
  s.out = dir.file("big.gguf");
  s.layers = 48;
  s.experts = 128;
  s.top_k = 8;
  s.embd = 2048;
  s.ffn = 768;
  Result<SynthLayout> lay = synth_layout(s);
  ASSERT_TRUE(lay.ok()) << lay.status().to_string();
  const uint64_t proj = 2048 / 256 * 144 * 768;  // q4_K: 144 bytes per 256 weights
  EXPECT_EQ(proj % 4096, 0u);
  EXPECT_EQ(lay->expert_bytes_per_layer, 3 * proj);
  EXPECT_EQ(lay->expert_tensor_bytes, 48ull * 128 * 3 * proj);
  EXPECT_GT(lay->total_bytes, lay->expert_tensor_bytes);
  EXPECT_GT(lay->total_bytes, 16ull << 30);
  EXPECT_EQ(lay->files.size(), 1u);
  EXPECT_EQ(lay->files[0].size, lay->total_bytes);
  EXPECT_FALSE(fs::exists(s.out));
}

TEST(SynthQwen3Moe, RejectsWhatLlamaCppCannotLoad) {
  TempDir dir("synth_qwen3moe");
  const SynthSpec good = qwen3(dir, GgmlType::F16);
  ASSERT_TRUE(synth_validate(good).ok());
  auto expect_invalid = [](const SynthSpec& s, const std::string& needle) {
    Status st = synth_validate(s);
    ASSERT_FALSE(st.ok()) << "accepted, expected '" << needle << "'";
    EXPECT_EQ(st.code(), Code::kInvalidArgument);
    EXPECT_NE(st.message().find(needle), std::string::npos) << st.message();
    EXPECT_FALSE(synth_write(s).ok());
    EXPECT_FALSE(fs::exists(s.out));
  };
  SynthSpec s = good;
  s.fused = true;
  expect_invalid(s, "fused");
  s = good;
  s.type = GgmlType::Q8_K;
  expect_invalid(s, "q8_K");
  s = good;
  s.embd = 48;
  expect_invalid(s, "embd 48 is not a multiple of 32");
  s = good;
  s.layers = kSynthQwen3MaxLayers + 1;
  expect_invalid(s, "layers 513");
  s = good;
  s.experts = kSynthQwen3MaxExperts + 1;
  expect_invalid(s, "experts 1025");
  // The same limits do not apply to the other architectures.
  s = good;
  s.arch = SynthArch::kQwen2Moe;
  s.embd = 48;
  s.fused = true;
  EXPECT_TRUE(synth_validate(s).ok());
}

}  // namespace
}  // namespace moepool
