// moepool-synth: writes synthetic GGUF MoE models (contents recomputable with synth_fill)
// and inspects models through moepool's Catalog. Exit codes: 0 ok, 1 runtime failure
// (I/O, unreadable model), 2 bad arguments.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <iostream>
#include <string>

#include "common/synth_model.h"
#include "common/units.h"
#include "tools/synth/inspect.h"

namespace moepool {
namespace {

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;

int usage_error(const std::string& message) {
  std::cerr << "moepool-synth: " << message << "\nRun with --help for more information.\n";
  return kExitUsage;
}

std::string expert_type_list() {
  std::string out;
  for (GgmlType t : synth_expert_types())
    out += (out.empty() ? "" : ", ") + std::string(ggml_type_name(t));
  return out;
}

void print_summary(const SynthLayout& lay, bool dry_run, std::ostream& out) {
  const SynthSpec& s = lay.spec;
  out << (dry_run ? "would write " : "wrote ") << lay.files.size()
      << (lay.files.size() == 1 ? " file" : " files") << ", " << format_bytes(lay.total_bytes)
      << " (" << lay.total_bytes << " bytes):\n";
  for (const SynthFile& f : lay.files)
    out << "  " << f.path << "  " << format_bytes(f.size) << ", " << f.tensor_count << " tensors\n";
  out << synth_arch_name(s.arch) << ": " << s.layers << " layers x " << s.experts
      << " experts (top-k " << s.top_k << "), embd " << s.embd << ", ffn " << s.ffn
      << ", expert type " << ggml_type_name(s.type) << (s.fused ? ", fused gate_up" : "")
      << (s.expert_bias ? ", expert biases" : "") << (s.expert_scale ? ", expert scales" : "")
      << ", seed " << s.seed << "\n";
  out << "expert: " << format_bytes(lay.expert_bytes_per_layer) << " ("
      << lay.expert_bytes_per_layer << " bytes) per expert per layer:";
  for (const SynthTensor& t : lay.tensors) {
    if (t.layer != 0 || !t.proj) continue;
    out << " " << proj_kind_name(*t.proj) << " " << t.expert_bytes;
  }
  out << "\nexpert tensors: " << format_bytes(lay.expert_tensor_bytes) << " of "
      << format_bytes(lay.total_bytes) << "\n";
}

int run(int argc, char** argv) {
  CLI::App app{
      "moepool-synth: write a synthetic GGUF MoE model whose tensor bytes are a pure function "
      "of (seed, tensor name, offset), or inspect a model through moepool's catalog."};
  SynthSpec spec;
  const SynthSpec q3 = synth_default_spec(SynthArch::kQwen3Moe);
  std::string type_name = "q4_K", arch_name = "qwen2moe", inspect_path;
  bool json = false, dry_run = false;

  auto* out_opt = app.add_option("--out", spec.out,
                                 "Output file; with --split N the parts are named "
                                 "<out minus .gguf>-0000k-of-0000N.gguf")
                      ->type_name("FILE");
  auto* layers_opt = app.add_option("--layers", spec.layers,
                                    "Number of MoE layers (1-" + std::to_string(kSynthMaxLayers) +
                                        "; qwen3moe 1-" + std::to_string(kSynthQwen3MaxLayers) +
                                        "); required, except with --arch qwen3moe (default " +
                                        std::to_string(q3.layers) + ")");
  auto* experts_opt = app.add_option(
      "--experts", spec.experts,
      "Routed experts per layer (1-" + std::to_string(kSynthMaxExperts) + "; qwen3moe 1-" +
          std::to_string(kSynthQwen3MaxExperts) +
          "); required, except with --arch qwen3moe (default " + std::to_string(q3.experts) + ")");
  auto* embd_opt = app.add_option("--embd", spec.embd,
                                  "Embedding width; a multiple of the expert type's block size "
                                  "(256 for K-quants and most iq types, 32 for q4_0..q8_0, "
                                  "iq4_nl, mxfp4; qwen3moe also needs a multiple of 32); "
                                  "required, except with --arch qwen3moe (default " +
                                      std::to_string(q3.embd) + ")");
  auto* ffn_opt = app.add_option("--ffn", spec.ffn,
                                 "Expert feed-forward width; a multiple of the block size like "
                                 "--embd; required, except with --arch qwen3moe (default " +
                                     std::to_string(q3.ffn) + ")");
  auto* type_opt =
      app.add_option("--type", type_name,
                     "Expert weight type (ggml name, any case): " + expert_type_list() +
                         "; required, except with --arch qwen3moe (default " +
                         std::string(ggml_type_name(q3.type)) + ")")
          ->type_name("TYPE");
  app.add_option("--seed", spec.seed, "Seed of the tensor contents (stored as moepool.synth.seed)")
      ->capture_default_str();
  app.add_option("--split", spec.split,
                 "Write the model as N complete GGUF files, llama.cpp gguf-split style: "
                 "tensors in order, metadata in the first, split.no/count (u16) and "
                 "split.tensors.count (i32) in each")
      ->capture_default_str();
  app.add_option("--arch", arch_name,
                 "Architecture of the metadata and non-expert tensors: qwen2moe, deepseek2 "
                 "(expert tensors plus plausible rest) or qwen3moe (a complete model a stock "
                 "llama.cpp loads and decodes from token ids: tokenizer.ggml.model no_vocab, "
                 "256 tokens)")
      ->type_name("ARCH")
      ->capture_default_str();
  app.add_option("--top-k", spec.top_k,
                 "Experts used per token (expert_used_count); default min(8, experts), with "
                 "--arch qwen3moe min(experts, clamp(experts / 4, 2, 8))");
  app.add_flag("--fused", spec.fused,
               "Write one fused ffn_gate_up_exps tensor [embd, 2*ffn, experts] per layer "
               "instead of separate ffn_gate_exps and ffn_up_exps (not with qwen3moe)");
  app.add_flag("--expert-bias", spec.expert_bias,
               "Also write F32 expert biases blk.N.ffn_{gate,up}_exps.bias [ffn, experts] and "
               "blk.N.ffn_down_exps.bias [embd, experts] (fused: ffn_gate_up_exps.bias "
               "[2*ffn, experts]); stock llama.cpp refuses such a qwen3moe model");
  app.add_flag("--expert-scale", spec.expert_scale,
               "Also write F32 per-expert scales blk.N.ffn_{gate,up,down}_exps.scale "
               "[experts], which llama.cpp applies to each expert's output");
  app.add_flag("--dry-run", dry_run,
               "Validate and print the layout and sizes without writing anything");
  auto* inspect_opt = app.add_option("--inspect", inspect_path,
                                     "Open FILE (any part of a split model) with moepool's "
                                     "catalog and print its files, tensors and experts; "
                                     "no other generation flags")
                          ->type_name("FILE");
  app.add_flag("--json", json, "With --inspect: print one JSON object instead of text");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : kExitUsage;
  }

  if (inspect_opt->count() > 0) {
    for (auto* o : {out_opt, layers_opt, experts_opt, embd_opt, ffn_opt, type_opt})
      if (o->count() > 0) return usage_error("--inspect cannot be combined with " + o->get_name());
    if (dry_run) return usage_error("--inspect cannot be combined with --dry-run");
    Status st = synth_inspect(inspect_path, json, std::cout);
    if (!st.ok()) {
      std::cerr << "moepool-synth: " << st.to_string() << "\n";
      return kExitRuntime;
    }
    return 0;
  }
  if (json) return usage_error("--json needs --inspect FILE");
  auto arch = synth_arch_by_name(arch_name);
  if (!arch)
    return usage_error("--arch '" + arch_name + "' is not qwen2moe, deepseek2 or qwen3moe");
  spec.arch = *arch;
  if (spec.arch == SynthArch::kQwen3Moe) {
    // The shape flags are optional for qwen3moe: absent ones take its defaults.
    const SynthSpec d = synth_default_spec(SynthArch::kQwen3Moe);
    if (layers_opt->count() == 0) spec.layers = d.layers;
    if (experts_opt->count() == 0) spec.experts = d.experts;
    if (embd_opt->count() == 0) spec.embd = d.embd;
    if (ffn_opt->count() == 0) spec.ffn = d.ffn;
    if (type_opt->count() == 0) type_name = std::string(ggml_type_name(d.type));
    if (out_opt->count() == 0) return usage_error(out_opt->get_name() + " is required");
  } else {
    for (auto* o : {out_opt, layers_opt, experts_opt, embd_opt, ffn_opt, type_opt})
      if (o->count() == 0)
        return usage_error(o->get_name() + " is required (optional only with --arch qwen3moe)");
  }

  auto traits = ggml_type_by_name(type_name);
  if (!traits)
    return usage_error("--type '" + type_name + "' is not a ggml type; use one of " +
                       expert_type_list());
  if (!synth_expert_type_ok(traits->type))
    return usage_error("--type " + std::string(traits->name) +
                       " cannot hold expert weights; use one of " + expert_type_list());
  spec.type = traits->type;
  Status valid = synth_validate(spec);
  if (!valid.ok()) return usage_error("invalid argument: " + valid.message());

  Result<SynthLayout> lay = dry_run ? synth_layout(spec) : synth_write(spec);
  if (!lay.ok()) {
    std::cerr << "moepool-synth: " << lay.status().to_string() << "\n";
    return kExitRuntime;
  }
  print_summary(*lay, dry_run, std::cout);
  return 0;
}

}  // namespace
}  // namespace moepool

int main(int argc, char** argv) { return moepool::run(argc, argv); }
