#include "tools/sim/cache_sim.h"

#include <algorithm>
#include <deque>
#include <limits>
#include <unordered_map>

#include "daemon/expert_predictor.h"

namespace moepool::sim {
namespace {

constexpr double kNotStarted = std::numeric_limits<double>::infinity();

struct Resident {
  double ready_at = 0;        // kNotStarted while its prefetch waits in the queue
  bool prefetched = false;    // read by a prefetch and not demanded since
  uint32_t target_worker = 0;
  uint32_t target_layer = 0;  // the layer request the prefetch was meant for
};

struct Queued {
  PolicyKey key;
  double enqueued;
};

class Simulator {
 public:
  Simulator(const ReplayStream& st, ResidencyPolicy& p, uint64_t cap, const IoModel& io,
            const PrefetchOptions& pf)
      : st_(st), policy_(p), capacity_(cap), io_(io), pf_(pf) {
    res_.steps = st.steps;
    bytes_mode_ = io_.budget_bytes > 0;
    if (bytes_mode_) {
      for (uint32_t m = 0; m < io_.model_bytes.size(); ++m)
        policy_.set_model_bytes(m, static_cast<uint64_t>(io_.model_bytes[m]));
      policy_.set_budget(0, static_cast<uint64_t>(io_.budget_bytes));
    }
    policy_.set_capacity(0, capacity_);
    if (bytes_mode_) policy_.set_budget(0, static_cast<uint64_t>(io_.budget_bytes));
    queued_per_worker_.assign(st.workers, 0);
    last_start_.assign(st.workers, -1);
    layer_time_.assign(st.workers, 0);
    history_.assign(st.workers, {});
    for (const LayerRequest& r : st.requests) {
      if (layers_.size() <= r.model) layers_.resize(r.model + 1, 0);
      layers_[r.model] = std::max(layers_[r.model], r.layer + 1);
    }
  }

  SimResult run() {
    for (const LayerRequest& r : st_.requests) request(r);
    res_.time_s = now_;
    return res_;
  }

 private:
  // Starts queued prefetches the channel can begin by time t.
  void pump(double t) {
    while (!queue_.empty() && busy_until_ <= t) {
      Queued q = queue_.front();
      queue_.pop_front();
      auto it = cache_.find(q.key);
      if (it == cache_.end() || it->second.ready_at != kNotStarted) continue;  // cancelled
      queued_per_worker_[it->second.target_worker]--;
      queued_bytes_ -= io_.bytes_of(q.key.model);
      double start = std::max(busy_until_, q.enqueued);
      busy_until_ = start + io_.bytes_of(q.key.model) / io_.bandwidth;
      it->second.ready_at = busy_until_ + io_.latency_s;
      res_.bytes_read += static_cast<uint64_t>(io_.bytes_of(q.key.model));
    }
  }
  // A demand read issued at t; returns when its bytes arrived.
  double demand_read(double t, uint32_t model) {
    double start = std::max(t, busy_until_);
    busy_until_ = start + io_.bytes_of(model) / io_.bandwidth;
    res_.bytes_read += static_cast<uint64_t>(io_.bytes_of(model));
    return busy_until_ + io_.latency_s;
  }
  bool is_protected(const PolicyKey& k) const {
    for (const PolicyKey& h : held_)
      if (h == k) return true;
    auto it = cache_.find(k);
    return it != cache_.end() && it->second.ready_at > now_;  // loading or queued
  }
  // Frees one slot if the cache is full; false if every resident key is protected.
  bool fits(double need) const {
    return bytes_mode_ ? used_bytes_ + need <= io_.budget_bytes : cache_.size() < capacity_;
  }
  // Frees room for one expert of `model` (bytes mode: as many victims as it takes).
  bool make_room(const PolicyKey* for_prefetch, double p, uint32_t model) {
    double need = io_.bytes_of(model);
    if (fits(need)) return !for_prefetch || policy_.admit(*for_prefetch, p, nullptr);
    auto keep = [this](const PolicyKey& k) { return is_protected(k); };
    while (!fits(need)) {
      auto v = policy_.victim(0, keep);
      if (!v) return false;
      if (for_prefetch && !policy_.admit(*for_prefetch, p, &*v)) return false;
      evict(*v);
    }
    return true;
  }
  void add(const PolicyKey& key, const Resident& s) {
    cache_[key] = s;
    used_bytes_ += io_.bytes_of(key.model);
  }
  void evict(const PolicyKey& k) {
    auto it = cache_.find(k);
    if (it == cache_.end()) return;
    if (it->second.ready_at == kNotStarted) {
      queued_per_worker_[it->second.target_worker]--;
      queued_bytes_ -= io_.bytes_of(k.model);
    }
    cache_.erase(it);
    used_bytes_ -= io_.bytes_of(k.model);
    policy_.erase(k);
  }
  // Drops prefetches meant for this request that are still waiting to start: too late.
  void cancel_stale(const LayerRequest& r) {
    for (const Queued& q : queue_) {
      auto it = cache_.find(q.key);
      if (it == cache_.end() || it->second.ready_at != kNotStarted) continue;
      if (it->second.target_worker != r.worker || it->second.target_layer != r.layer) continue;
      bool wanted = false;
      for (uint32_t k = 0; k < r.count; ++k)
        if (q.key.expert == st_.experts[r.first + k] && q.key.layer == r.layer) wanted = true;
      if (!wanted) evict(q.key);
    }
  }

  void request(const LayerRequest& r) {
    // The time between this worker's layer requests (all workers share the simulated
    // clock), averaged: when its next layers will start.
    if (last_start_[r.worker] >= 0) {
      double gap = now_ - last_start_[r.worker];
      layer_time_[r.worker] = layer_time_[r.worker] > 0 ? 0.875 * layer_time_[r.worker] + 0.125 * gap : gap;
    }
    last_start_[r.worker] = now_;
    pump(now_);
    if (pf_.enabled) cancel_stale(r);
    held_.clear();
    double done = now_;
    std::vector<uint32_t> cur(st_.experts.begin() + r.first,
                              st_.experts.begin() + r.first + r.count);
    for (uint32_t e : cur) {
      PolicyKey key{r.model, r.layer, e};
      ++tick_;
      res_.accesses++;
      auto it = cache_.find(key);
      bool hit = it != cache_.end();
      policy_.on_access(key, tick_, hit);
      if (hit) {
        res_.hits++;
        Resident& s = it->second;
        if (s.prefetched) {
          res_.prefetches_used++;
          s.prefetched = false;
        }
        if (s.ready_at == kNotStarted) {  // still queued: read it now, as a demand
          queued_per_worker_[s.target_worker]--;
          queued_bytes_ -= io_.bytes_of(r.model);
          s.ready_at = demand_read(now_, r.model);
        }
        if (s.ready_at <= now_) res_.stall_free++;
        done = std::max(done, s.ready_at);
      } else {
        if (!make_room(nullptr, 1.0, r.model)) {
          // Every slot is protected: the request cannot be served. The simulator sizes
          // capacity so this cannot happen; count it as a stall regardless.
        }
        Resident s;
        s.ready_at = demand_read(now_, r.model);
        done = std::max(done, s.ready_at);
        add(key, s);
        policy_.insert(key, 0, tick_);
      }
      held_.push_back(key);
    }
    if (pf_.enabled) prefetch_after(r, cur, done + io_.compute_s);
    now_ = done + io_.compute_s;
    pump(now_);
  }

  // Guesses after request r, whose layer ends at `end`.
  void prefetch_after(const LayerRequest& r, const std::vector<uint32_t>& cur, double end) {
    // Learn layer-d -> layer transitions of this worker for d = 1..distance (within one
    // step: the history's layers count up to this one), then guess layers +1..+distance,
    // the nearest first.
    const uint32_t dist = std::max(1u, pf_.distance);
    std::deque<Prev>& hist = history_[r.worker];
    if (!hist.empty() && hist.back().layer >= r.layer) hist.clear();  // a new step
    for (const Prev& p : hist)
      if (r.layer - p.layer <= dist) predictor_.learn(r.model, p.layer, p.experts, cur, r.layer - p.layer);
    hist.push_back({r.layer, cur});
    if (hist.size() > dist) hist.pop_front();
    uint32_t max_q = pf_.max_queued ? pf_.max_queued : (dist + 1) * r.count;
    uint32_t max_g = pf_.max_guesses ? pf_.max_guesses : r.count;
    for (uint32_t d = 1; d <= dist && r.layer + d < layers_[r.model]; ++d) {
      for (const ExpertGuess& g :
           predictor_.predict(r.model, r.layer, cur, max_g, pf_.min_probability, d)) {
        if (queued_per_worker_[r.worker] >= max_q) return;
        PolicyKey key{r.model, r.layer + d, g.expert};
        if (cache_.count(key)) continue;
        if (pf_.deadline && layer_time_[r.worker] > 0) {
          // A read that cannot arrive before its layer starts is not stall-free: skip it
          // rather than evict for it (its layer reads it on demand if the guess was right).
          double need = end + (d - 1) * layer_time_[r.worker];
          double bw = io_.bandwidth;
          double arrive = std::max(busy_until_, now_) + (queued_bytes_ + io_.bytes_of(r.model)) / bw + io_.latency_s;
          if (arrive > need) continue;
        }
        if (!make_room(&key, g.probability, r.model)) continue;
        Resident s;
        s.ready_at = kNotStarted;
        s.prefetched = true;
        s.target_worker = r.worker;
        s.target_layer = r.layer + d;
        add(key, s);
        policy_.insert(key, 0, tick_);
        queue_.push_back({key, now_});
        queued_per_worker_[r.worker]++;
        queued_bytes_ += io_.bytes_of(r.model);
        res_.prefetches++;
      }
    }
  }

  struct Prev {
    uint32_t layer = ~0u;
    std::vector<uint32_t> experts;
  };
  const ReplayStream& st_;
  ResidencyPolicy& policy_;
  uint64_t capacity_;
  IoModel io_;
  PrefetchOptions pf_;
  bool bytes_mode_ = false;
  double used_bytes_ = 0;
  double now_ = 0;
  double busy_until_ = 0;
  uint64_t tick_ = 0;
  SimResult res_;
  std::unordered_map<PolicyKey, Resident, PolicyKeyHash> cache_;
  std::deque<Queued> queue_;
  std::vector<uint32_t> queued_per_worker_;
  std::vector<PolicyKey> held_;  // the current request's keys (pinned)
  std::vector<std::deque<Prev>> history_;  // per worker: its last requests of this step
  std::vector<uint32_t> layers_;           // per model: its layer count
  std::vector<double> last_start_;         // per worker: when its last request started
  std::vector<double> layer_time_;         // per worker: average time between its requests
  double queued_bytes_ = 0;                // prefetch bytes queued, not started
  ExpertPredictor predictor_;
};

}  // namespace

SimResult run_policy(const ReplayStream& stream, ResidencyPolicy& policy, uint64_t capacity,
                     const IoModel& io, const PrefetchOptions& prefetch) {
  return Simulator(stream, policy, capacity, io, prefetch).run();
}

}  // namespace moepool::sim
