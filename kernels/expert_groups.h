// Expert-major grouping of a batch's routed (token, k) pairs: the order in which the prefill
// GPU kernel and the CPU prefill reference (moe_prefill_reference) walk a batch, so that each
// expert's weights are read once per tile of tokens instead of once per token.
// Pure function; any thread may call it.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "moepool/status.h"

namespace moepool::kernels {

// One routed (token, k) pair: token index and its position k among that token's top_k.
struct RoutedPair {
  uint32_t token;
  uint32_t k;
};

// One tile of the prefill: up to `tile` consecutive pairs of one expert.
struct ExpertTile {
  uint32_t expert;
  uint32_t first_pair;  // index into ExpertGroups::pairs
  uint32_t n_pairs;     // 1..tile
};

struct ExpertGroups {
  std::vector<RoutedPair> pairs;       // all n_tokens*top_k pairs, sorted by expert, then token
  std::vector<uint32_t> expert_first;  // n_experts+1 offsets into pairs (CSR)
  std::vector<ExpertTile> tiles;       // every expert's pairs cut into tiles of <= tile pairs
};

// Groups ids [n_tokens][top_k] by expert (stable: within one expert, pairs keep token order,
// then k order). Tiles are listed expert by expert; an expert with no pairs has no tile.
// Fails (InvalidArgument naming token, k and id) on an id >= n_experts, and on tile == 0,
// top_k == 0 or ids.size() not a multiple of top_k.
Result<ExpertGroups> group_by_expert(std::span<const uint32_t> ids, uint32_t top_k,
                                     uint32_t n_experts, uint32_t tile);

}  // namespace moepool::kernels
