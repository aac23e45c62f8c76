// moepool-synth's model: shapes, metadata and file layout (contents: synth_fill.cpp).
#include "common/synth_model.h"

#include <algorithm>
#include <cstdio>
#include <memory>

#include "common/gguf_writer.h"

namespace moepool {
namespace {

constexpr uint64_t kVocab = 256;  // tokenizer.ggml.model is "no_vocab"
constexpr uint64_t kContext = 4096;
constexpr float kRmsEps = 1e-6f;
// deepseek2 multi-head latent attention dimensions, scaled down from DeepSeek-V2-Lite.
constexpr uint64_t kDsKvLoraRank = 128, kDsQkNope = 64, kDsQkRope = 32, kDsVHead = 64;

// Attention head layout for an embedding width.
struct Heads {
  uint64_t n_head, n_head_kv, head_dim;
};

Heads heads_for(uint64_t embd) {
  uint64_t dim = embd % 128 == 0 ? 128 : embd % 64 == 0 ? 64 : embd;
  uint64_t n = embd / dim;
  return {n, n % 4 == 0 ? n / 4 : n, dim};
}

// A tensor to add before the layout knows its file and offset.
struct Planned {
  std::string name;
  GgmlType type;
  std::vector<uint64_t> ne;
  int32_t layer;
  std::optional<ProjKind> proj;
};

std::string blk(uint32_t l, const char* suffix) {
  return "blk." + std::to_string(l) + "." + suffix;
}

// The optional per-expert extras of one expert projection tensor (see synth_model.h).
void plan_extras(const SynthSpec& s, uint32_t l, const char* proj, uint64_t rows,
                 std::vector<Planned>& t) {
  const int32_t L = static_cast<int32_t>(l);
  const std::string base = std::string("ffn_") + proj + "_exps.";
  if (s.expert_bias)
    t.push_back({blk(l, (base + "bias").c_str()), GgmlType::F32, {rows, s.experts}, L, {}});
  if (s.expert_scale)
    t.push_back({blk(l, (base + "scale").c_str()), GgmlType::F32, {s.experts}, L, {}});
}

// Every tensor of the model in file order.
std::vector<Planned> plan_tensors(const SynthSpec& s) {
  std::vector<Planned> t;
  const GgmlType f32 = GgmlType::F32, f16 = GgmlType::F16;
  const uint64_t e = s.embd, f = s.ffn, n = s.experts;
  const Heads h = heads_for(e);
  const bool qwen3 = s.arch == SynthArch::kQwen3Moe;
  auto add = [&](std::string name, GgmlType type, std::vector<uint64_t> ne, int32_t layer,
                 std::optional<ProjKind> proj = std::nullopt) {
    t.push_back({std::move(name), type, std::move(ne), layer, proj});
  };
  add("token_embd.weight", f16, {e, kVocab}, -1);
  for (uint32_t l = 0; l < s.layers; ++l) {
    const int32_t L = static_cast<int32_t>(l);
    add(blk(l, "attn_norm.weight"), f32, {e}, L);
    if (s.arch == SynthArch::kQwen2Moe) {
      const uint64_t kv = h.head_dim * h.n_head_kv;
      add(blk(l, "attn_q.weight"), f16, {e, e}, L);
      add(blk(l, "attn_q.bias"), f32, {e}, L);
      add(blk(l, "attn_k.weight"), f16, {e, kv}, L);
      add(blk(l, "attn_k.bias"), f32, {kv}, L);
      add(blk(l, "attn_v.weight"), f16, {e, kv}, L);
      add(blk(l, "attn_v.bias"), f32, {kv}, L);
      add(blk(l, "attn_output.weight"), f16, {e, e}, L);
    } else if (qwen3) {
      const SynthHeads q = synth_qwen3moe_heads(e);
      const uint64_t qd = q.head_dim * q.n_head, kv = q.head_dim * q.n_head_kv;
      add(blk(l, "attn_q.weight"), f16, {e, qd}, L);
      add(blk(l, "attn_k.weight"), f16, {e, kv}, L);
      add(blk(l, "attn_v.weight"), f16, {e, kv}, L);
      add(blk(l, "attn_output.weight"), f16, {qd, e}, L);
      add(blk(l, "attn_q_norm.weight"), f32, {q.head_dim}, L);
      add(blk(l, "attn_k_norm.weight"), f32, {q.head_dim}, L);
    } else {
      add(blk(l, "attn_q.weight"), f16, {e, h.n_head * (kDsQkNope + kDsQkRope)}, L);
      add(blk(l, "attn_kv_a_mqa.weight"), f16, {e, kDsKvLoraRank + kDsQkRope}, L);
      add(blk(l, "attn_kv_a_norm.weight"), f32, {kDsKvLoraRank}, L);
      add(blk(l, "attn_kv_b.weight"), f16, {kDsKvLoraRank, h.n_head * (kDsQkNope + kDsVHead)}, L);
      add(blk(l, "attn_output.weight"), f16, {h.n_head * kDsVHead, e}, L);
    }
    add(blk(l, "ffn_norm.weight"), f32, {e}, L);
    add(blk(l, "ffn_gate_inp.weight"), f32, {e, n}, L);  // the router
    if (s.fused) {
      add(blk(l, "ffn_gate_up_exps.weight"), s.type, {e, 2 * f, n}, L, ProjKind::kGateUp);
      plan_extras(s, l, "gate_up", 2 * f, t);
    } else {
      add(blk(l, "ffn_gate_exps.weight"), s.type, {e, f, n}, L, ProjKind::kGate);
      plan_extras(s, l, "gate", f, t);
      add(blk(l, "ffn_up_exps.weight"), s.type, {e, f, n}, L, ProjKind::kUp);
      plan_extras(s, l, "up", f, t);
    }
    add(blk(l, "ffn_down_exps.weight"), s.type, {f, e, n}, L, ProjKind::kDown);
    plan_extras(s, l, "down", e, t);
    if (qwen3) continue;  // no shared experts
    if (s.arch == SynthArch::kQwen2Moe) add(blk(l, "ffn_gate_inp_shexp.weight"), f32, {e}, L);
    add(blk(l, "ffn_gate_shexp.weight"), f16, {e, f}, L);
    add(blk(l, "ffn_up_shexp.weight"), f16, {e, f}, L);
    add(blk(l, "ffn_down_shexp.weight"), f16, {f, e}, L);
  }
  add("output_norm.weight", f32, {e}, -1);
  add("output.weight", f16, {e, kVocab}, -1);
  return t;
}

// Architecture metadata, written to the first (or only) file.
void add_metadata(const SynthSpec& s, GgufWriter& w) {
  const std::string a(synth_arch_name(s.arch));
  const Heads h = heads_for(s.embd);
  w.add_string("general.architecture", a);
  w.add_string("general.name", "moepool-synth " + a + " " + std::to_string(s.layers) + "x" +
                                   std::to_string(s.experts) + " " +
                                   std::string(ggml_type_name(s.type)));
  w.add_u32(a + ".block_count", s.layers);
  w.add_u32(a + ".context_length", static_cast<uint32_t>(kContext));
  w.add_u32(a + ".embedding_length", static_cast<uint32_t>(s.embd));
  w.add_u32(a + ".feed_forward_length", static_cast<uint32_t>(s.ffn));
  w.add_u32(a + ".expert_feed_forward_length", static_cast<uint32_t>(s.ffn));
  w.add_u32(a + ".expert_count", s.experts);
  w.add_u32(a + ".expert_used_count", s.top_k);
  w.add_u32(a + ".vocab_size", static_cast<uint32_t>(kVocab));
  w.add_f32(a + ".attention.layer_norm_rms_epsilon", kRmsEps);
  if (s.arch == SynthArch::kQwen3Moe) {
    const SynthHeads q = synth_qwen3moe_heads(s.embd);
    w.add_u32(a + ".attention.head_count", static_cast<uint32_t>(q.n_head));
    w.add_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(q.n_head_kv));
    w.add_u32(a + ".attention.key_length", static_cast<uint32_t>(q.head_dim));
    w.add_u32(a + ".attention.value_length", static_cast<uint32_t>(q.head_dim));
    w.add_f32(a + ".rope.freq_base", 1000000.0f);
  } else if (s.arch == SynthArch::kQwen2Moe) {
    w.add_u32(a + ".expert_shared_feed_forward_length", static_cast<uint32_t>(s.ffn));
    w.add_u32(a + ".attention.head_count", static_cast<uint32_t>(h.n_head));
    w.add_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(h.n_head_kv));
    w.add_f32(a + ".rope.freq_base", 1000000.0f);
  } else {
    w.add_u32(a + ".attention.head_count", static_cast<uint32_t>(h.n_head));
    w.add_u32(a + ".attention.head_count_kv", static_cast<uint32_t>(h.n_head));
    w.add_u32(a + ".attention.kv_lora_rank", static_cast<uint32_t>(kDsKvLoraRank));
    w.add_u32(a + ".attention.key_length", static_cast<uint32_t>(kDsQkNope + kDsQkRope));
    w.add_u32(a + ".attention.value_length", static_cast<uint32_t>(kDsVHead));
    w.add_u32(a + ".rope.dimension_count", static_cast<uint32_t>(kDsQkRope));
    w.add_u32(a + ".leading_dense_block_count", 0);
    w.add_u32(a + ".expert_shared_count", 1);
    w.add_f32(a + ".expert_weights_scale", 1.0f);
  }
  w.add_string("tokenizer.ggml.model", "no_vocab");
  w.add_u64("moepool.synth.seed", s.seed);
  w.add_string("moepool.synth.fill", "splitmix64-fnv1a64-v1");
}

// Assigns tensors to `parts` files in order, balancing bytes, every file non-empty.
std::vector<uint32_t> assign_files(const std::vector<uint64_t>& bytes, uint32_t parts) {
  const size_t n = bytes.size();
  std::vector<uint32_t> file(n, 0);
  long double total = 0;
  for (uint64_t b : bytes) total += static_cast<long double>(b);
  long double start = 0;
  int64_t prev = -1;
  for (size_t i = 0; i < n; ++i) {
    int64_t by_bytes = total > 0 ? static_cast<int64_t>(start * parts / total) : 0;
    int64_t must = static_cast<int64_t>(parts) - static_cast<int64_t>(n - i);  // fill the rest
    int64_t f = std::max({by_bytes, prev, must});
    f = std::min<int64_t>({f, prev + 1, static_cast<int64_t>(parts) - 1});
    file[i] = static_cast<uint32_t>(f);
    prev = f;
    start += static_cast<long double>(bytes[i]);
  }
  return file;
}

// Builds one writer per file, with every tensor's fill, and the layout they produce.
Result<SynthLayout> build(const SynthSpec& spec_in,
                          std::vector<std::unique_ptr<GgufWriter>>* writers) {
  MOEPOOL_RETURN_IF_ERROR(synth_validate(spec_in));
  SynthLayout lay;
  lay.spec = spec_in;
  SynthSpec& s = lay.spec;
  if (s.top_k == 0) s.top_k = synth_default_top_k(s.arch, s.experts);

  std::vector<Planned> planned = plan_tensors(s);
  std::vector<uint64_t> sizes;
  for (const Planned& p : planned) {
    uint64_t bytes = *ggml_row_bytes(p.type, p.ne[0]);          // validated: whole blocks
    for (size_t d = 1; d < p.ne.size(); ++d) bytes *= p.ne[d];  // validated: no overflow
    sizes.push_back(bytes);
  }
  std::vector<uint32_t> file_of = assign_files(sizes, s.split);

  std::vector<std::unique_ptr<GgufWriter>> ws;
  for (uint32_t k = 0; k < s.split; ++k) {
    ws.push_back(std::make_unique<GgufWriter>());
    if (k == 0) add_metadata(s, *ws[k]);
    if (s.split > 1) {
      // u16, as llama.cpp's gguf-split writes them and its loader expects.
      ws[k]->add_u16("split.no", static_cast<uint16_t>(k));
      ws[k]->add_u16("split.count", static_cast<uint16_t>(s.split));
      ws[k]->add_i32("split.tensors.count", static_cast<int32_t>(planned.size()));
    }
  }
  for (size_t i = 0; i < planned.size(); ++i) {
    const Planned& p = planned[i];
    GgufWriter& w = *ws[file_of[i]];
    uint64_t seed = s.seed;
    std::string name = p.name;
    GgmlType type = p.type;
    w.add_tensor(p.name, p.type, p.ne, [seed, name, type](uint64_t off, std::span<uint8_t> out) {
      synth_fill(seed, name, type, off, out);
    });
  }
  // Offsets are final once every tensor is added (the header size depends on them all).
  std::vector<size_t> next(s.split, 0);
  for (size_t i = 0; i < planned.size(); ++i) {
    const Planned& p = planned[i];
    const GgufWriter& w = *ws[file_of[i]];
    size_t k = next[file_of[i]]++;
    SynthTensor t;
    t.name = p.name;
    t.type = p.type;
    t.ne = p.ne;
    t.bytes = w.tensor_bytes(k);
    t.file_index = file_of[i];
    t.offset = w.tensor_offset(k);
    t.layer = p.layer;
    t.proj = p.proj;
    if (p.proj) {
      t.expert_bytes = t.bytes / s.experts;
      lay.expert_tensor_bytes += t.bytes;
      if (p.layer == 0) lay.expert_bytes_per_layer += t.expert_bytes;
    }
    lay.tensors.push_back(std::move(t));
  }
  for (uint32_t k = 0; k < s.split; ++k) {
    SynthFile f;
    f.path = s.split > 1 ? synth_split_path(s.out, k, s.split) : s.out;
    f.size = ws[k]->file_size();
    f.data_offset = ws[k]->data_offset();
    f.tensor_count = static_cast<uint32_t>(next[k]);
    lay.total_bytes += f.size;
    lay.files.push_back(std::move(f));
  }
  if (writers) *writers = std::move(ws);
  return lay;
}

}  // namespace

std::string_view synth_arch_name(SynthArch arch) {
  switch (arch) {
    case SynthArch::kDeepseek2:
      return "deepseek2";
    case SynthArch::kQwen3Moe:
      return "qwen3moe";
    default:
      return "qwen2moe";
  }
}

std::optional<SynthArch> synth_arch_by_name(std::string_view name) {
  if (name == "qwen2moe") return SynthArch::kQwen2Moe;
  if (name == "deepseek2") return SynthArch::kDeepseek2;
  if (name == "qwen3moe") return SynthArch::kQwen3Moe;
  return std::nullopt;
}

SynthSpec synth_default_spec(SynthArch arch) {
  SynthSpec s;
  s.arch = arch;
  if (arch == SynthArch::kQwen3Moe) {
    s.layers = 4;
    s.experts = 8;
    s.embd = 256;
    s.ffn = 256;
    s.type = GgmlType::Q4_K;
  }
  return s;
}

uint32_t synth_default_top_k(SynthArch arch, uint32_t experts) {
  const uint32_t k = arch == SynthArch::kQwen3Moe ? std::clamp<uint32_t>(experts / 4, 2, 8) : 8;
  return std::min(k, experts);
}

SynthHeads synth_qwen3moe_heads(uint64_t embd) {
  const uint64_t dim = embd % 64 == 0 ? 64 : 32;
  const uint64_t n = std::max<uint64_t>(1, embd / dim);
  return {n, n % 2 == 0 ? n / 2 : n, dim};
}

bool synth_expert_type_ok(GgmlType type) {
  switch (type) {
    case GgmlType::Q8_1:
    case GgmlType::I8:
    case GgmlType::I16:
    case GgmlType::I32:
    case GgmlType::I64:
    case GgmlType::F64:
      return false;
    default:
      return ggml_type_traits(static_cast<uint32_t>(type)).has_value();
  }
}

std::vector<GgmlType> synth_expert_types() {
  size_t n = 0;
  const GgmlTypeTraits* all = ggml_all_types(&n);
  std::vector<GgmlType> out;
  for (size_t i = 0; i < n; ++i)
    if (synth_expert_type_ok(all[i].type)) out.push_back(all[i].type);
  return out;
}

Status synth_validate(const SynthSpec& s) {
  auto range = [](const char* field, uint64_t v, uint64_t lo, uint64_t hi) -> Status {
    if (v >= lo && v <= hi) return Status::Ok();
    return InvalidArgument(std::string(field) + " " + std::to_string(v) + " is out of range [" +
                           std::to_string(lo) + ", " + std::to_string(hi) + "]");
  };
  if (s.out.empty()) return InvalidArgument("out: no output path given");
  MOEPOOL_RETURN_IF_ERROR(range("layers", s.layers, 1, kSynthMaxLayers));
  MOEPOOL_RETURN_IF_ERROR(range("experts", s.experts, 1, kSynthMaxExperts));
  MOEPOOL_RETURN_IF_ERROR(range("embd", s.embd, 1, kSynthMaxDim));
  MOEPOOL_RETURN_IF_ERROR(range("ffn", s.ffn, 1, kSynthMaxDim));
  MOEPOOL_RETURN_IF_ERROR(range("split", s.split, 1, kSynthMaxSplit));
  if (s.top_k > s.experts)
    return InvalidArgument("top-k " + std::to_string(s.top_k) + " is more than the " +
                           std::to_string(s.experts) + " experts");
  if (s.arch == SynthArch::kQwen3Moe) {
    // What llama.cpp's qwen3moe loader and graph accept (llama-hparams.h, qwen3moe.cpp).
    const char* why = " for qwen3moe (llama.cpp's limit)";
    if (s.layers > kSynthQwen3MaxLayers)
      return InvalidArgument("layers " + std::to_string(s.layers) + " is more than " +
                             std::to_string(kSynthQwen3MaxLayers) + why);
    if (s.experts > kSynthQwen3MaxExperts)
      return InvalidArgument("experts " + std::to_string(s.experts) + " is more than " +
                             std::to_string(kSynthQwen3MaxExperts) + why);
    if (s.embd % 32 != 0)
      return InvalidArgument("embd " + std::to_string(s.embd) +
                             " is not a multiple of 32, the smallest qwen3moe head size");
    if (s.fused)
      return InvalidArgument(
          "fused: llama.cpp's qwen3moe has no fused ffn_gate_up_exps; drop --fused");
    if (s.type == GgmlType::Q8_K)
      return InvalidArgument(
          "type q8_K is ggml's activation type; llama.cpp cannot multiply qwen3moe experts by it");
  }
  auto traits = ggml_type_traits(static_cast<uint32_t>(s.type));
  if (!traits || !synth_expert_type_ok(s.type))
    return InvalidArgument("type " + std::string(ggml_type_name(s.type)) +
                           " cannot hold expert weights");
  for (auto [field, v] : {std::pair{"embd", s.embd}, std::pair{"ffn", s.ffn}}) {
    if (v % traits->block_size != 0)
      return InvalidArgument(std::string(field) + " " + std::to_string(v) +
                             " is not a multiple of the " + std::string(traits->name) +
                             " block size " + std::to_string(traits->block_size));
  }
  // Non-expert tensors are F32/F16 of shape [embd, ...]: any width works. One tensor stays
  // below 2^59 bytes with these limits; the model as a whole must stay below 1 PiB.
  const std::vector<Planned> planned = plan_tensors(s);
  unsigned __int128 total = 0;
  for (const Planned& p : planned) {
    unsigned __int128 bytes = *ggml_row_bytes(p.type, p.ne[0]);
    for (size_t d = 1; d < p.ne.size(); ++d) bytes *= p.ne[d];
    total += bytes;
  }
  if (total > kSynthMaxModelBytes)
    return InvalidArgument("model would take more than " + std::to_string(kSynthMaxModelBytes) +
                           " bytes (1 PiB); use fewer layers, experts or smaller dims");
  const size_t n_tensors = planned.size();
  if (s.split > n_tensors)
    return InvalidArgument("split " + std::to_string(s.split) + " is more than the " +
                           std::to_string(n_tensors) + " tensors of this model");
  return Status::Ok();
}

std::string synth_split_path(const std::string& out, uint32_t index, uint32_t count) {
  std::string prefix = out;
  const std::string ext = ".gguf";
  if (prefix.size() >= ext.size() &&
      prefix.compare(prefix.size() - ext.size(), ext.size(), ext) == 0)
    prefix.resize(prefix.size() - ext.size());
  char buf[32];
  std::snprintf(buf, sizeof(buf), "-%05u-of-%05u.gguf", index + 1, count);
  return prefix + buf;
}

Result<uint64_t> synth_expert_bytes(GgmlType type, ProjKind kind, uint64_t embd, uint64_t ffn) {
  const bool down = kind == ProjKind::kDown;
  auto row = ggml_row_bytes(type, down ? ffn : embd);
  if (!row)
    return InvalidArgument("row of " + std::to_string(down ? ffn : embd) + " " +
                           std::string(ggml_type_name(type)) + " is not whole blocks");
  uint64_t rows = down ? embd : kind == ProjKind::kGateUp ? 2 * ffn : ffn;
  return *row * rows;
}

const SynthTensor* SynthLayout::find(std::string_view name) const {
  for (const SynthTensor& t : tensors)
    if (t.name == name) return &t;
  return nullptr;
}

Result<SynthLayout> synth_layout(const SynthSpec& spec) { return build(spec, nullptr); }

Result<SynthLayout> synth_write(const SynthSpec& spec) {
  std::vector<std::unique_ptr<GgufWriter>> writers;
  Result<SynthLayout> lay = build(spec, &writers);
  if (!lay.ok()) return lay.status();
  for (size_t k = 0; k < writers.size(); ++k)
    MOEPOOL_RETURN_IF_ERROR(writers[k]->write(lay->files[k].path));
  return lay;
}

}  // namespace moepool
