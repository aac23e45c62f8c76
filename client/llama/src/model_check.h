// What the llama.cpp adapter needs to know about a GGUF before llama.cpp loads it, and
// whether the adapter can serve it at all.
// Thread safety: a pure function of the files; any thread.
#pragma once

#include <cstdint>
#include <string>

#include "moepool/status.h"

namespace moepool {

struct LlamaModelFacts {
  std::string architecture;
  uint32_t expert_used_count = 0;  // <arch>.expert_used_count
};

// Reads the model's metadata and tensor list (every split part) and refuses, with a
// message naming the tensor, models whose routed experts have per-expert biases or
// scales (blk.N.ffn_*_exps.bias / .scale): llama.cpp indexes those with the same expert
// ids the adapter rewrites into pool slots, so they would read the wrong rows.
Result<LlamaModelFacts> check_llama_model(const std::string& gguf_path);

}  // namespace moepool
