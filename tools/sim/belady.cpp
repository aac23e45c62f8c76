#include "tools/sim/belady.h"

#include <limits>
#include <set>
#include <unordered_map>
#include <utility>

#include "daemon/policy.h"

namespace moepool::sim {

SimResult run_belady(const ReplayStream& st, uint64_t capacity, const IoModel& io) {
  constexpr uint64_t kNever = std::numeric_limits<uint64_t>::max();
  const size_t n = st.experts.size();
  // next[i]: position of the next demand of access i's key (kNever if none).
  std::vector<uint64_t> next(n, kNever);
  std::vector<PolicyKey> keys(n);
  for (const LayerRequest& r : st.requests)
    for (uint32_t k = 0; k < r.count; ++k)
      keys[r.first + k] = PolicyKey{r.model, r.layer, st.experts[r.first + k]};
  {
    std::unordered_map<PolicyKey, uint64_t, PolicyKeyHash> last;
    for (size_t i = n; i-- > 0;) {
      auto it = last.find(keys[i]);
      if (it != last.end()) next[i] = it->second;
      last[keys[i]] = i;
    }
  }
  SimResult res;
  res.steps = st.steps;
  std::set<std::pair<uint64_t, PolicyKey>> by_next;  // resident, farthest last
  std::unordered_map<PolicyKey, uint64_t, PolicyKeyHash> resident;  // key -> its next use
  const bool bytes = io.budget_bytes > 0;  // sizes differ: evict until the key fits
  double used = 0;
  for (const LayerRequest& r : st.requests) {
    double wait = 0;
    for (uint32_t k = 0; k < r.count; ++k) {
      size_t i = r.first + k;
      const PolicyKey& key = keys[i];
      res.accesses++;
      auto it = resident.find(key);
      if (it != resident.end()) {
        res.hits++;
        res.stall_free++;
        by_next.erase({it->second, key});
        it->second = next[i];
        by_next.insert({next[i], key});
        continue;
      }
      res.bytes_read += static_cast<uint64_t>(io.bytes_of(key.model));
      wait += io.bytes_of(key.model) / io.bandwidth;
      auto full = [&] {
        return bytes ? used + io.bytes_of(key.model) > io.budget_bytes : resident.size() >= capacity;
      };
      while (full()) {
        bool evicted = false;
        // Farthest next use among keys this request does not hold.
        for (auto v = by_next.rbegin(); v != by_next.rend(); ++v) {
          bool held = false;
          for (uint32_t j = 0; j < k; ++j)
            if (keys[r.first + j] == v->second) held = true;
          if (held) continue;
          used -= io.bytes_of(v->second.model);
          resident.erase(v->second);
          by_next.erase(std::next(v).base());
          evicted = true;
          break;
        }
        if (!evicted) break;
      }
      used += io.bytes_of(key.model);
      resident[key] = next[i];
      by_next.insert({next[i], key});
    }
    res.time_s += (wait > 0 ? wait + io.latency_s : 0) + io.compute_s;
  }
  return res;
}

}  // namespace moepool::sim
