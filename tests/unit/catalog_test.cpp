// Tests of the expert catalog: extents of every type, fused gate_up, mixed layer types,
// incomplete layers, split models and content identity.
#include "tests/unit/temp_dir.h"
#include "common/catalog.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <functional>
#include <set>
#include <string>
#include <vector>

#include "common/gguf_writer.h"

namespace moepool {
namespace {


// The byte a tensor named `name` holds at `off`; differs between tensors and experts.
uint8_t pattern(const std::string& name, uint64_t off) {
  uint64_t h = std::hash<std::string>{}(name);
  return static_cast<uint8_t>((h >> (off % 7)) ^ (off * 2654435761u >> 7) ^ off);
}

GgufWriter::Fill fill_for(const std::string& name) {
  return [name](uint64_t off, std::span<uint8_t> out) {
    for (size_t k = 0; k < out.size(); ++k) out[k] = pattern(name, off + k);
  };
}

// Expert bytes computed from the block layout alone (not via ggml_row_bytes).
uint64_t expected_expert_bytes(GgmlType type, uint64_t ne0, uint64_t ne1) {
  size_t n = 0;
  const GgmlTypeTraits* all = ggml_all_types(&n);
  for (size_t i = 0; i < n; ++i)
    if (all[i].type == type) return ne0 / all[i].block_size * all[i].type_size * ne1;
  ADD_FAILURE() << "unknown type";
  return 0;
}

std::string proj_name(uint32_t layer, const char* kind) {
  return "blk." + std::to_string(layer) + ".ffn_" + kind + "_exps.weight";
}

struct LayerSpec {
  uint32_t layer;
  GgmlType type;
  bool fused = false;
  uint32_t n_expert = 4;
  uint64_t ne0_blocks = 2, ne1 = 3;
};

// Tensor (name, type, ne) list of a layer, in the order gate, up, down / gate_up, down.
struct TensorSpec {
  std::string name;
  GgmlType type;
  std::vector<uint64_t> ne;
};
std::vector<TensorSpec> layer_tensors(const LayerSpec& l) {
  uint64_t bs = ggml_type_traits(static_cast<uint32_t>(l.type))->block_size;
  uint64_t ne0 = bs * l.ne0_blocks;
  std::vector<TensorSpec> out;
  if (l.fused) {
    out.push_back({proj_name(l.layer, "gate_up"), l.type, {ne0, 2 * l.ne1, l.n_expert}});
  } else {
    out.push_back({proj_name(l.layer, "gate"), l.type, {ne0, l.ne1, l.n_expert}});
    out.push_back({proj_name(l.layer, "up"), l.type, {ne0, l.ne1, l.n_expert}});
  }
  // down maps back: [ne1, ne0]; keep ne0 a whole number of blocks.
  out.push_back({proj_name(l.layer, "down"), l.type, {ne0, l.ne1 + 1, l.n_expert}});
  return out;
}

void add_kvs(GgufWriter& w, const std::string& name) {
  w.add_string("general.architecture", "qwen3moe");
  if (!name.empty()) w.add_string("general.name", name);
  w.add_u32("qwen3moe.block_count", 48);
  w.add_string_array("tokenizer.ggml.tokens", {"<s>", "</s>", "hi"});
}

// Writes one unsplit model and returns its writer's tensor offsets by name.
void write_model(const std::string& path, const std::vector<LayerSpec>& layers,
                 const std::string& name = "test model") {
  GgufWriter w;
  add_kvs(w, name);
  w.add_tensor("token_embd.weight", GgmlType::F16, {64, 10}, fill_for("token_embd.weight"));
  for (const LayerSpec& l : layers) {
    w.add_tensor("blk." + std::to_string(l.layer) + ".attn_q.weight", GgmlType::F32, {8, 8},
                 nullptr);
    for (const TensorSpec& t : layer_tensors(l))
      w.add_tensor(t.name, t.type, t.ne, fill_for(t.name));
  }
  ASSERT_TRUE(w.write(path).ok());
}

// Writes the same model as `n` split parts, tensors dealt round-robin over the parts.
void write_split(const std::string& prefix, uint32_t n, const std::vector<LayerSpec>& layers,
                 const std::string& name = "test model") {
  std::vector<GgufWriter> parts(n);
  for (uint32_t k = 0; k < n; ++k) {
    if (k == 0) add_kvs(parts[k], name);
    parts[k].add_u32("split.no", k);
    parts[k].add_u32("split.count", n);
  }
  size_t next = 0;
  parts[0].add_tensor("token_embd.weight", GgmlType::F16, {64, 10}, fill_for("token_embd.weight"));
  for (const LayerSpec& l : layers)
    for (const TensorSpec& t : layer_tensors(l))
      parts[next++ % n].add_tensor(t.name, t.type, t.ne, fill_for(t.name));
  for (uint32_t k = 0; k < n; ++k) {
    char suffix[32];
    std::snprintf(suffix, sizeof(suffix), "-%05u-of-%05u.gguf", k + 1, n);
    ASSERT_TRUE(parts[k].write(prefix + suffix).ok());
  }
}

// Checks every expert extent of `c` holds exactly the bytes its tensor's fill wrote.
void expect_extents_hold_expert_bytes(const Catalog& c) {
  std::vector<int> fds;
  for (const CatalogFile& f : c.files()) {
    fds.push_back(::open(f.path.c_str(), O_RDONLY));
    ASSERT_GE(fds.back(), 0) << f.path;
  }
  for (const MoeLayer& l : c.layers()) {
    for (const ProjTensor& p : l.projections) {
      for (uint32_t e = 0; e < l.n_experts; ++e) {
        Extent x = p.expert_extent(e);
        ASSERT_LT(x.file_index, fds.size());
        ASSERT_LE(x.offset + x.bytes, c.files()[x.file_index].size);
        std::vector<uint8_t> got(x.bytes);
        ASSERT_EQ(::pread(fds[x.file_index], got.data(), got.size(), static_cast<off_t>(x.offset)),
                  static_cast<ssize_t>(got.size()));
        for (uint64_t k = 0; k < got.size(); ++k)
          ASSERT_EQ(got[k], pattern(p.tensor_name, e * p.expert_bytes + k))
              << p.tensor_name << " expert " << e << " byte " << k;
      }
    }
  }
  for (int fd : fds) ::close(fd);
}

TEST(Catalog, ExtentsForEveryType) {
  TempDir dir;
  size_t n = 0;
  const GgmlTypeTraits* all = ggml_all_types(&n);
  std::vector<LayerSpec> layers;
  for (size_t i = 0; i < n; ++i) layers.push_back({static_cast<uint32_t>(i), all[i].type});
  std::string path = dir.file("all.gguf");
  write_model(path, layers);
  auto c = Catalog::open(path);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  ASSERT_EQ(c->layers().size(), n);
  for (size_t i = 0; i < n; ++i) {
    const MoeLayer& l = c->layers()[i];
    EXPECT_EQ(l.layer, i);
    EXPECT_EQ(c->layer(static_cast<uint32_t>(i)), &l);
    EXPECT_EQ(l.n_experts, 4u);
    ASSERT_EQ(l.projections.size(), 3u);
    EXPECT_EQ(l.projections[0].kind, ProjKind::kGate);
    EXPECT_EQ(l.projections[1].kind, ProjKind::kUp);
    EXPECT_EQ(l.projections[2].kind, ProjKind::kDown);
    uint64_t ne0 = uint64_t{all[i].block_size} * 2;
    uint64_t gate = expected_expert_bytes(all[i].type, ne0, 3);
    uint64_t down = expected_expert_bytes(all[i].type, ne0, 4);
    EXPECT_EQ(gate, uint64_t{all[i].type_size} * 2 * 3);
    EXPECT_EQ(l.projections[0].expert_bytes, gate) << all[i].name;
    EXPECT_EQ(l.projections[1].expert_bytes, gate) << all[i].name;
    EXPECT_EQ(l.projections[2].expert_bytes, down) << all[i].name;
    EXPECT_EQ(l.expert_bytes, 2 * gate + down);
    for (const ProjTensor& p : l.projections) {
      EXPECT_EQ(p.type, all[i].type);
      EXPECT_EQ(p.ne[0], ne0);
      EXPECT_EQ(p.ne[2], 4u);
      EXPECT_EQ(p.file_index, 0u);
      EXPECT_EQ(p.data_offset % 32, 0u);
      Extent x = p.expert_extent(3);
      EXPECT_EQ(x.offset, p.data_offset + 3 * p.expert_bytes);
      EXPECT_EQ(x.bytes, p.expert_bytes);
    }
  }
  expect_extents_hold_expert_bytes(*c);
}

TEST(Catalog, FusedGateUp) {
  TempDir dir;
  std::string path = dir.file("fused.gguf");
  write_model(path, {{0, GgmlType::MXFP4, true, 8}, {1, GgmlType::Q8_0, true, 8}});
  auto c = Catalog::open(path);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  ASSERT_EQ(c->layers().size(), 2u);
  const MoeLayer& l = c->layers()[0];
  ASSERT_EQ(l.projections.size(), 2u);
  EXPECT_EQ(l.projections[0].kind, ProjKind::kGateUp);
  EXPECT_EQ(l.projections[0].tensor_name, "blk.0.ffn_gate_up_exps.weight");
  EXPECT_EQ(l.projections[1].kind, ProjKind::kDown);
  EXPECT_EQ(l.projections[0].expert_bytes, expected_expert_bytes(GgmlType::MXFP4, 64, 6));
  EXPECT_EQ(l.projections[0].expert_bytes, 17u * 2 * 6);
  EXPECT_EQ(l.n_experts, 8u);
  EXPECT_STREQ(proj_kind_name(ProjKind::kGateUp), "gate_up");
  expect_extents_hold_expert_bytes(*c);
}

TEST(Catalog, LayersOfDifferentTypesInOrder) {
  TempDir dir;
  std::string path = dir.file("mixed.gguf");
  // Added out of order, with a gap at layer 2.
  write_model(path, {{3, GgmlType::F16, false, 2, 16, 2},
                     {0, GgmlType::Q4_K, false, 16, 1, 4},
                     {1, GgmlType::Q8_0, false, 16, 4, 4}});
  auto c = Catalog::open(path);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->name(), "test model");
  EXPECT_EQ(c->architecture(), "qwen3moe");
  EXPECT_EQ(c->block_count(), 48u);
  ASSERT_EQ(c->layers().size(), 3u);
  EXPECT_EQ(c->layers()[0].layer, 0u);
  EXPECT_EQ(c->layers()[1].layer, 1u);
  EXPECT_EQ(c->layers()[2].layer, 3u);
  EXPECT_EQ(c->layer(2), nullptr);
  EXPECT_EQ(c->layer(4), nullptr);
  EXPECT_EQ(c->layer(1000000), nullptr);
  ASSERT_NE(c->layer(3), nullptr);
  EXPECT_EQ(c->layer(0)->projections[0].type, GgmlType::Q4_K);
  EXPECT_EQ(c->layer(1)->projections[0].type, GgmlType::Q8_0);
  EXPECT_EQ(c->layer(3)->projections[0].type, GgmlType::F16);
  EXPECT_EQ(c->layer(0)->n_experts, 16u);
  EXPECT_EQ(c->layer(3)->n_experts, 2u);
  EXPECT_EQ(c->layer(0)->projections[0].expert_bytes, 144u * 4);
  EXPECT_EQ(c->layer(1)->projections[2].expert_bytes, 34u * 4 * 5);
  EXPECT_EQ(c->layer(3)->projections[1].expert_bytes, 2u * 16 * 2);
  ASSERT_EQ(c->files().size(), 1u);
  EXPECT_EQ(c->files()[0].path, std::filesystem::canonical(path).string());
  EXPECT_EQ(c->files()[0].size, std::filesystem::file_size(path));
  EXPECT_EQ(c->total_bytes(), std::filesystem::file_size(path));
  EXPECT_GT(c->files()[0].data_offset, 0u);
  expect_extents_hold_expert_bytes(*c);

  // Copies and moves keep everything.
  Catalog copy = *c;
  EXPECT_EQ(copy.model_id(), c->model_id());
  EXPECT_EQ(copy.layer(3)->projections[2].tensor_name, "blk.3.ffn_down_exps.weight");
  Catalog moved = std::move(copy);
  EXPECT_EQ(moved.layer(1)->expert_bytes, c->layer(1)->expert_bytes);
}

// Writes a model with the given extra tensors (name, ne) next to one good layer 0.
Result<Catalog> open_with(const TempDir& dir, const std::string& file,
                          const std::vector<std::pair<std::string, std::vector<uint64_t>>>& extra) {
  GgufWriter w;
  add_kvs(w, "");
  for (const TensorSpec& t : layer_tensors({0, GgmlType::Q8_0}))
    w.add_tensor(t.name, t.type, t.ne, nullptr);
  for (const auto& [name, ne] : extra) w.add_tensor(name, GgmlType::Q8_0, ne, nullptr);
  std::string path = dir.file(file);
  EXPECT_TRUE(w.write(path).ok());
  return Catalog::open(path);
}

TEST(Catalog, IncompleteLayerIsAnError) {
  TempDir dir;
  const std::vector<uint64_t> ne = {64, 3, 4};
  auto r = open_with(dir, "a.gguf", {{proj_name(5, "gate"), ne}, {proj_name(5, "down"), ne}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
  EXPECT_NE(r.status().message().find("layer 5"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("a.gguf"), std::string::npos) << r.status().message();

  r = open_with(dir, "b.gguf", {{proj_name(2, "gate"), ne}, {proj_name(2, "up"), ne}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layer 2"), std::string::npos) << r.status().message();

  r = open_with(
      dir, "c.gguf",
      {{proj_name(7, "gate_up"), ne}, {proj_name(7, "gate"), ne}, {proj_name(7, "down"), ne}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layer 7"), std::string::npos) << r.status().message();

  r = open_with(dir, "d.gguf", {{proj_name(1, "down"), ne}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layer 1"), std::string::npos) << r.status().message();

  // Names that are not exactly an expert tensor are ordinary tensors.
  r = open_with(dir, "e.gguf",
                {{"blk.01.ffn_gate_exps.weight", ne},
                 {"blk.1.ffn_gate_exps.bias", ne},
                 {"blk.x.ffn_up_exps.weight", ne},
                 {"blk.1.ffn_gate_shexp.weight", {64, 3}}});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->layers().size(), 1u);
}

TEST(Catalog, ExpertShapesAreChecked) {
  TempDir dir;
  auto r = open_with(dir, "a.gguf",
                     {{proj_name(1, "gate"), {64, 3, 4}},
                      {proj_name(1, "up"), {64, 3, 8}},
                      {proj_name(1, "down"), {64, 3, 4}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layer 1"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("experts"), std::string::npos) << r.status().message();

  r = open_with(dir, "b.gguf", {{proj_name(1, "gate"), {64, 3}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("blk.1.ffn_gate_exps.weight"), std::string::npos);
  EXPECT_NE(r.status().message().find("3-D"), std::string::npos) << r.status().message();

  r = open_with(dir, "c.gguf", {{proj_name(1, "gate"), {64, 3, 0}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("n_expert"), std::string::npos) << r.status().message();

  r = open_with(dir, "d.gguf", {{proj_name(70000, "gate"), {64, 3, 2}}});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layer index"), std::string::npos) << r.status().message();
}

std::vector<LayerSpec> split_layers() {
  return {{0, GgmlType::Q4_K, false, 8, 2, 3},
          {1, GgmlType::Q8_0, true, 8, 3, 2},
          {2, GgmlType::IQ4_XS, false, 8, 1, 5},
          {3, GgmlType::F16, false, 8, 64, 2}};
}

TEST(Catalog, SplitModelEqualsUnsplit) {
  TempDir dir;
  write_model(dir.file("whole.gguf"), split_layers());
  write_split(dir.file("model"), 3, split_layers());
  auto whole = Catalog::open(dir.file("whole.gguf"));
  ASSERT_TRUE(whole.ok()) << whole.status().to_string();
  for (const char* part : {"model-00001-of-00003.gguf", "model-00002-of-00003.gguf"}) {
    auto split = Catalog::open(dir.file(part));
    ASSERT_TRUE(split.ok()) << split.status().to_string();
    ASSERT_EQ(split->files().size(), 3u);
    for (uint32_t k = 0; k < 3; ++k) {
      char name[64];
      std::snprintf(name, sizeof(name), "model-%05u-of-00003.gguf", k + 1);
      EXPECT_EQ(split->files()[k].path, std::filesystem::canonical(dir.file(name)).string());
    }
    EXPECT_EQ(split->name(), whole->name());
    EXPECT_EQ(split->architecture(), "qwen3moe");
    EXPECT_EQ(split->block_count(), 48u);
    ASSERT_EQ(split->layers().size(), whole->layers().size());
    std::set<uint32_t> used_files;
    for (size_t i = 0; i < whole->layers().size(); ++i) {
      const MoeLayer& a = whole->layers()[i];
      const MoeLayer& b = split->layers()[i];
      EXPECT_EQ(a.layer, b.layer);
      EXPECT_EQ(a.n_experts, b.n_experts);
      EXPECT_EQ(a.expert_bytes, b.expert_bytes);
      ASSERT_EQ(a.projections.size(), b.projections.size());
      for (size_t j = 0; j < a.projections.size(); ++j) {
        EXPECT_EQ(a.projections[j].kind, b.projections[j].kind);
        EXPECT_EQ(a.projections[j].tensor_name, b.projections[j].tensor_name);
        EXPECT_EQ(a.projections[j].type, b.projections[j].type);
        EXPECT_EQ(a.projections[j].expert_bytes, b.projections[j].expert_bytes);
        for (int d = 0; d < 3; ++d) EXPECT_EQ(a.projections[j].ne[d], b.projections[j].ne[d]);
        used_files.insert(b.projections[j].file_index);
      }
    }
    EXPECT_EQ(used_files.size(), 3u);  // experts really are spread over the parts
    expect_extents_hold_expert_bytes(*split);
    EXPECT_NE(split->model_id(), whole->model_id());
  }
  expect_extents_hold_expert_bytes(*whole);
}

TEST(Catalog, SplitNameFallsBackToPrefix) {
  TempDir dir;
  write_split(dir.file("kimi"), 2, split_layers(), "");
  auto c = Catalog::open(dir.file("kimi-00002-of-00002.gguf"));
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->name(), "kimi");
  write_model(dir.file("plain.v2.gguf"), split_layers(), "");
  auto p = Catalog::open(dir.file("plain.v2.gguf"));
  ASSERT_TRUE(p.ok()) << p.status().to_string();
  EXPECT_EQ(p->name(), "plain.v2");
}

TEST(Catalog, MissingSplitPartIsAnError) {
  TempDir dir;
  write_split(dir.file("model"), 3, split_layers());
  ASSERT_TRUE(std::filesystem::remove(dir.file("model-00003-of-00003.gguf")));
  auto c = Catalog::open(dir.file("model-00001-of-00003.gguf"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kNotFound);
  EXPECT_NE(c.status().message().find("model-00003-of-00003.gguf"), std::string::npos)
      << c.status().message();

  auto bad = Catalog::open(dir.file("model-00004-of-00003.gguf"));
  EXPECT_FALSE(bad.ok());
  auto none = Catalog::open(dir.file("missing.gguf"));
  EXPECT_EQ(none.status().code(), Code::kNotFound);
}

TEST(Catalog, SplitKvsMustAgreeWithTheName) {
  TempDir dir;
  write_split(dir.file("model"), 2, split_layers());
  // Part 2 of 2 renamed as part 2 of 2 of another model whose count says 3.
  std::filesystem::rename(dir.file("model-00001-of-00002.gguf"), dir.file("m-00001-of-00003.gguf"));
  std::filesystem::rename(dir.file("model-00002-of-00002.gguf"), dir.file("m-00002-of-00003.gguf"));
  write_model(dir.file("m-00003-of-00003.gguf"), {});
  auto c = Catalog::open(dir.file("m-00001-of-00003.gguf"));
  ASSERT_FALSE(c.ok());
  EXPECT_NE(c.status().message().find("split.count"), std::string::npos) << c.status().message();

  // A single file whose KVs claim it is one part of several.
  write_split(dir.file("x"), 2, split_layers());
  std::filesystem::rename(dir.file("x-00001-of-00002.gguf"), dir.file("single.gguf"));
  auto s = Catalog::open(dir.file("single.gguf"));
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.status().message().find("split.count"), std::string::npos) << s.status().message();

  // Parts in the wrong order: split.no disagrees.
  write_split(dir.file("y"), 2, split_layers());
  std::filesystem::rename(dir.file("y-00001-of-00002.gguf"), dir.file("tmp.gguf"));
  std::filesystem::rename(dir.file("y-00002-of-00002.gguf"), dir.file("y-00001-of-00002.gguf"));
  std::filesystem::rename(dir.file("tmp.gguf"), dir.file("y-00002-of-00002.gguf"));
  auto y = Catalog::open(dir.file("y-00001-of-00002.gguf"));
  ASSERT_FALSE(y.ok());
  EXPECT_NE(y.status().message().find("split.no"), std::string::npos) << y.status().message();
}

TEST(Catalog, ModelIdIsContentIdentity) {
  TempDir dir;
  std::filesystem::create_directory(dir.file("sub"));
  write_model(dir.file("a.gguf"), split_layers());
  write_model(dir.file("sub/b.gguf"), split_layers());
  write_model(dir.file("c.gguf"), split_layers(), "another name");
  std::filesystem::create_symlink(dir.file("a.gguf"), dir.file("link.gguf"));
  auto a = Catalog::open(dir.file("a.gguf"));
  auto b = Catalog::open(dir.file("sub/b.gguf"));
  auto c = Catalog::open(dir.file("c.gguf"));
  auto l = Catalog::open(dir.file("link.gguf"));
  ASSERT_TRUE(a.ok() && b.ok() && c.ok() && l.ok());
  EXPECT_EQ(a->model_id(), b->model_id());
  EXPECT_NE(a->model_id(), c->model_id());
  EXPECT_EQ(l->model_id(), a->model_id());
  EXPECT_EQ(l->files()[0].path, a->files()[0].path);  // the link resolves to its target

  // Same header, different size: different identity.
  ASSERT_EQ(::truncate(dir.file("sub/b.gguf").c_str(),
                       static_cast<off_t>(std::filesystem::file_size(dir.file("a.gguf")) + 32)),
            0);
  auto grown = Catalog::open(dir.file("sub/b.gguf"));
  ASSERT_TRUE(grown.ok()) << grown.status().to_string();
  EXPECT_NE(grown->model_id(), a->model_id());
}

TEST(Catalog, SameHeaderDifferentWeightsIsADifferentModel) {
  // Two fine-tunes converted alike have byte-identical headers and sizes; sharing their
  // experts would serve one model's weights to the other.
  TempDir dir;
  write_model(dir.file("a.gguf"), split_layers());
  std::filesystem::copy_file(dir.file("a.gguf"), dir.file("b.gguf"));
  auto a = Catalog::open(dir.file("a.gguf"));
  ASSERT_TRUE(a.ok());
  // Change one byte of the last tensor's data (past any end padding, in a sampled block).
  off_t at = static_cast<off_t>(std::filesystem::file_size(dir.file("b.gguf")) - 64);
  int fd = ::open(dir.file("b.gguf").c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t byte = 0;
  ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
  byte ^= 0xff;
  ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
  ::close(fd);
  auto b = Catalog::open(dir.file("b.gguf"));
  ASSERT_TRUE(b.ok());
  EXPECT_NE(a->model_id(), b->model_id());
}

TEST(Catalog, MalformedFileIsAnError) {
  TempDir dir;
  write_model(dir.file("t.gguf"), split_layers());
  ASSERT_EQ(::truncate(dir.file("t.gguf").c_str(), 100), 0);
  auto c = Catalog::open(dir.file("t.gguf"));
  ASSERT_FALSE(c.ok());
  EXPECT_EQ(c.status().code(), Code::kInvalidArgument);
  EXPECT_NE(c.status().message().find("t.gguf"), std::string::npos) << c.status().message();
  EXPECT_NE(c.status().message().find("at byte"), std::string::npos) << c.status().message();
}

}  // namespace
}  // namespace moepool
