#include "tools/sim/static_split.h"

#include <functional>
#include <map>
#include <optional>
#include <utility>

#include "daemon/policy.h"
#include "tools/sim/replay_stream.h"

namespace moepool::sim {
namespace {

bool better(const SimResult& a, const SimResult& b) {
  if (a.hits * b.accesses != b.hits * a.accesses) return a.hit_rate() > b.hit_rate();
  return a.stall_free_rate() > b.stall_free_rate();
}

}  // namespace

Result<StaticSplit> best_static_split(const std::vector<const Trace*>& traces,
                                      uint64_t capacity, const IoModel& io,
                                      const StaticSplitOptions& o) {
  const size_t n = traces.size();
  const uint32_t g = o.granularity ? o.granularity : 16;
  if (n == 0) return InvalidArgument("static split: no traces");
  if (n > g) return InvalidArgument("static split: more models than budget steps");
  if (auto p = make_policy(o.policy); !p.ok()) return p.status();
  std::vector<ReplayStream> streams;
  for (const Trace* t : traces) streams.push_back(build_stream({t}, o.workers, o.max_steps));
  // Memoized private replays: (model, capacity) -> result.
  std::map<std::pair<size_t, uint64_t>, SimResult> memo;
  const bool bytes = io.budget_bytes > 0;  // split the byte budget, sizes per model
  auto replay = [&](size_t m, uint64_t cap) -> const SimResult& {
    auto key = std::make_pair(m, cap);
    auto it = memo.find(key);
    if (it != memo.end()) return it->second;
    auto p = make_policy(o.policy);  // known to succeed: checked above
    IoModel own = io;
    if (bytes) {  // cap is this model's bytes; its private stream is model 0
      own.model_bytes = {io.bytes_of(static_cast<uint32_t>(m))};
      own.budget_bytes = static_cast<double>(cap);
      return memo[key] = run_policy(streams[m], **p, cap / static_cast<uint64_t>(own.model_bytes[0]),
                                    own, o.prefetch);
    }
    return memo[key] = run_policy(streams[m], **p, cap, io, o.prefetch);
  };
  const uint64_t budget = bytes ? static_cast<uint64_t>(io.budget_bytes) : capacity;
  std::optional<StaticSplit> best;
  // Every composition of g into n positive parts, as capacity shares.
  std::vector<uint32_t> parts(n, 0);
  auto consider = [&] {
    StaticSplit s;
    uint64_t given = 0;
    for (size_t m = 0; m < n; ++m) {
      uint64_t cap = m + 1 == n ? budget - given : budget / g * parts[m];
      given += cap;
      double one = bytes ? io.bytes_of(static_cast<uint32_t>(m)) : 1.0;
      if (cap < traces[m]->shape().top_k * one) return;
      s.capacities.push_back(cap);
    }
    for (size_t m = 0; m < n; ++m) {
      s.per_model.push_back(replay(m, s.capacities[m]));
      s.total += s.per_model.back();
      if (bytes)  // report experts
        s.capacities[m] = s.capacities[m] / static_cast<uint64_t>(io.bytes_of(static_cast<uint32_t>(m)));
    }
    if (!best || better(s.total, best->total)) best = std::move(s);
  };
  std::function<void(size_t, uint32_t)> fill = [&](size_t m, uint32_t left) {
    if (m + 1 == n) {
      parts[m] = left;
      consider();
      return;
    }
    for (uint32_t k = 1; k + (n - 1 - m) <= left; ++k) {
      parts[m] = k;
      fill(m + 1, left - k);
    }
  };
  fill(0, g);
  if (!best)
    return InvalidArgument("static split: a budget of " + std::to_string(capacity) +
                           " experts cannot give every model room for one layer request");
  return std::move(*best);
}

}  // namespace moepool::sim
