#include "kernels/expert_groups.h"

#include <algorithm>
#include <string>

namespace moepool::kernels {

Result<ExpertGroups> group_by_expert(std::span<const uint32_t> ids, uint32_t top_k,
                                     uint32_t n_experts, uint32_t tile) {
  if (tile == 0) return InvalidArgument("group_by_expert: tile must be > 0");
  if (top_k == 0) return InvalidArgument("group_by_expert: top_k must be > 0");
  if (ids.size() % top_k != 0) {
    return InvalidArgument("group_by_expert: ids has " + std::to_string(ids.size()) +
                           " entries, not a multiple of top_k " + std::to_string(top_k));
  }
  if (ids.size() > UINT32_MAX) {
    return InvalidArgument("group_by_expert: " + std::to_string(ids.size()) +
                           " routed pairs do not fit 32-bit offsets");
  }
  ExpertGroups g;
  g.expert_first.assign(size_t{n_experts} + 1, 0);
  // Counting sort: count per expert, prefix-sum into offsets, then place in input order,
  // which is token-major, so each expert's pairs come out sorted by token, then k.
  for (size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] >= n_experts) {
      return InvalidArgument("group_by_expert: token " + std::to_string(i / top_k) + " k " +
                             std::to_string(i % top_k) + ": expert id " +
                             std::to_string(ids[i]) + " is out of range (" +
                             std::to_string(n_experts) + " experts)");
    }
    ++g.expert_first[ids[i] + 1];
  }
  for (uint32_t e = 0; e < n_experts; ++e) g.expert_first[e + 1] += g.expert_first[e];
  g.pairs.resize(ids.size());
  std::vector<uint32_t> next(g.expert_first.begin(), g.expert_first.end() - 1);
  for (size_t i = 0; i < ids.size(); ++i) {
    g.pairs[next[ids[i]]++] = {static_cast<uint32_t>(i / top_k), static_cast<uint32_t>(i % top_k)};
  }
  for (uint32_t e = 0; e < n_experts; ++e) {
    for (uint32_t p = g.expert_first[e]; p < g.expert_first[e + 1]; p += tile) {
      const uint32_t n = std::min(tile, g.expert_first[e + 1] - p);
      g.tiles.push_back({e, p, n});
    }
  }
  return g;
}

}  // namespace moepool::kernels
