#include "tools/sim/policy_cost.h"

#include <algorithm>
#include <ctime>
#include <unordered_map>

#include "daemon/policy.h"

namespace moepool::sim {
namespace {

// One call the cache made, in order. A victim call carries the key it returned, so the
// replay can check the fresh policy made the same decision.
struct Call {
  enum Kind : uint8_t { kAccess, kVictim, kErase, kInsert } kind;
  bool hit = false;
  uint32_t request = 0;  // index of the layer request
  uint32_t held = 0;     // its first `held` keys are pinned (protected) at this call
  uint64_t tick = 0;
  PolicyKey key;
};

// Applies the byte budget or slot count the simulator would (cache_sim.cpp).
void configure(ResidencyPolicy& p, uint64_t capacity, const IoModel& io) {
  if (io.budget_bytes > 0) {
    for (uint32_t m = 0; m < io.model_bytes.size(); ++m)
      p.set_model_bytes(m, static_cast<uint64_t>(io.model_bytes[m]));
    p.set_budget(0, static_cast<uint64_t>(io.budget_bytes));
  }
  p.set_capacity(0, capacity);
  if (io.budget_bytes > 0) p.set_budget(0, static_cast<uint64_t>(io.budget_bytes));
}

// This thread's CPU time in ns: unlike wall time it does not count time the thread was
// preempted, so it holds on a shared machine.
double thread_ns() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return ts.tv_sec * 1e9 + ts.tv_nsec;
}

}  // namespace

double PolicyCost::median_ns() const {
  if (ns_per_access.empty()) return 0;
  std::vector<double> v = ns_per_access;
  std::sort(v.begin(), v.end());
  return v.size() % 2 ? v[v.size() / 2] : (v[v.size() / 2 - 1] + v[v.size() / 2]) / 2;
}

Result<PolicyCost> measure_policy_cost(const ReplayStream& st, const std::string& name,
                                       uint64_t capacity, const IoModel& io, uint32_t runs) {
  if (runs == 0) return InvalidArgument("cost runs must be at least 1");
  auto made = make_policy(name);
  if (!made.ok()) return made.status();
  PolicyCost cost;
  cost.policy = name;

  // Record: a demand-only cache (no prefetch), as the agreement test replays the daemon.
  std::vector<Call> calls;
  {
    ResidencyPolicy& p = **made;
    configure(p, capacity, io);
    const bool bytes = io.budget_bytes > 0;
    std::unordered_map<PolicyKey, double, PolicyKeyHash> resident;  // key -> bytes
    double used = 0;
    uint64_t tick = 0;
    for (uint32_t ri = 0; ri < st.requests.size(); ++ri) {
      const LayerRequest& r = st.requests[ri];
      uint32_t held = 0;  // as the daemon pins a request's experts one by one
      auto keep = [&](const PolicyKey& k) {
        if (k.model != r.model || k.layer != r.layer) return false;
        for (uint32_t i = 0; i < held; ++i)
          if (st.experts[r.first + i] == k.expert) return true;
        return false;
      };
      for (uint32_t i = 0; i < r.count; ++i) {
        PolicyKey key{r.model, r.layer, st.experts[r.first + i]};
        bool hit = resident.count(key) > 0;
        ++tick;
        held = i;
        calls.push_back({Call::kAccess, hit, ri, held, tick, key});
        p.on_access(key, tick, hit);
        cost.accesses++;
        if (hit) continue;
        cost.misses++;
        double need = io.bytes_of(r.model);
        while (bytes ? used + need > io.budget_bytes : resident.size() >= capacity) {
          auto v = p.victim(0, keep);
          if (!v) break;  // every resident key is this request's: over budget, as the sim
          calls.push_back({Call::kVictim, false, ri, held, tick, *v});
          calls.push_back({Call::kErase, false, ri, held, tick, *v});
          p.erase(*v);
          used -= resident[*v];
          resident.erase(*v);
        }
        calls.push_back({Call::kInsert, false, ri, held, tick, key});
        p.insert(key, 0, tick);
        resident[key] = need;
        used += need;
      }
    }
  }

  // Replay the log against fresh policies, timing only the policy's calls.
  for (uint32_t run = 0; run < runs; ++run) {
    auto fresh = make_policy(name);
    ResidencyPolicy& p = **fresh;
    configure(p, capacity, io);
    const LayerRequest* req = nullptr;
    uint32_t held = 0;
    auto keep = [&](const PolicyKey& k) {
      if (k.model != req->model || k.layer != req->layer) return false;
      for (uint32_t i = 0; i < held; ++i)
        if (st.experts[req->first + i] == k.expert) return true;
      return false;
    };
    uint64_t diverged = 0;
    double t0 = thread_ns();
    for (const Call& c : calls) {
      req = &st.requests[c.request];
      held = c.held;
      switch (c.kind) {
        case Call::kAccess: p.on_access(c.key, c.tick, c.hit); break;
        case Call::kVictim: {
          auto v = p.victim(0, keep);
          diverged += !v || *v != c.key;
          break;
        }
        case Call::kErase: p.erase(c.key); break;
        case Call::kInsert: p.insert(c.key, 0, c.tick); break;
      }
    }
    double t1 = thread_ns();
    if (diverged)
      return Internal("policy '" + name + "' chose " + std::to_string(diverged) +
                      " different victims on a replay of its own call log (not deterministic)");
    double ns = t1 - t0;
    cost.ns_per_access.push_back(cost.accesses ? ns / cost.accesses : 0);
  }
  return cost;
}

}  // namespace moepool::sim
