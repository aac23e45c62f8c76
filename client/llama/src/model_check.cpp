#include "model_check.h"

#include <string_view>

#include "common/catalog.h"
#include "common/gguf.h"

namespace moepool {
namespace {

// True for blk.<N>.ffn_<proj>_exps.<suffix> with suffix "bias" or "scale".
bool is_expert_bias_or_scale(std::string_view name) {
  if (!name.starts_with("blk.")) return false;
  for (std::string_view suffix : {"_exps.bias", "_exps.scale"})
    if (name.ends_with(suffix) && name.find(".ffn_") != std::string_view::npos) return true;
  return false;
}

}  // namespace

Result<LlamaModelFacts> check_llama_model(const std::string& gguf_path) {
  auto catalog = Catalog::open(gguf_path);
  if (!catalog.ok()) return catalog.status();
  if (catalog->layers().empty())
    return InvalidArgument(gguf_path + ": no routed expert tensors (blk.N.ffn_*_exps.weight); "
                           "moepool serves MoE models only");
  LlamaModelFacts facts;
  facts.architecture = catalog->architecture();
  for (const CatalogFile& f : catalog->files()) {
    auto gguf = GgufFile::open(f.path);
    if (!gguf.ok()) return gguf.status();
    for (const GgufTensorInfo& t : gguf->tensors()) {
      if (is_expert_bias_or_scale(t.name))
        return FailedPrecondition(
            f.path + ": tensor " + t.name +
            " gives the routed experts per-expert biases or scales; llama.cpp reads those "
            "with the same expert ids moepool rewrites into pool slots, so the adapter "
            "refuses this model rather than compute wrong output");
    }
    if (facts.expert_used_count == 0) {
      auto used = gguf->get_uint(facts.architecture + ".expert_used_count");
      if (used) facts.expert_used_count = static_cast<uint32_t>(*used);
    }
  }
  if (facts.expert_used_count == 0)
    return InvalidArgument(gguf_path + ": metadata key " + facts.architecture +
                           ".expert_used_count is missing or 0");
  return facts;
}

}  // namespace moepool
