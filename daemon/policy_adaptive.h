// The default residency policy: decayed frequency on each layer's own clock, with the
// balance between recency and frequency chosen online by shadow caches.
//   - Least-stale clock: a key's age counts the accesses its own (model, layer) saw since
//     its last use, not global ticks. Layers are visited in turn, so a global clock makes
//     an expert of the next layer look older than one of the layer just computed (LRU
//     then evicts exactly what is needed next and thrashes once a step does not fit).
//   - Score: sum over its accesses of 2^-(age / h) (LRFU on the layer clock); a small h
//     orders like least-stale LRU, a large h like LFU. Across layers and models a key is
//     worth score x its model's access rate per layer (hits it buys per global tick),
//     divided by its model's expert bytes when several sizes share one budget.
//   - Adaptive h (as ARC adapts between recency and frequency, measured online): h is
//     lambda x the slots per layer, and for each lambda in `lambdas` a shadow cache of
//     the same capacity replays the demand stream; the live order follows the lambda
//     whose shadow hit most over a recent window (decayed), switching only when another
//     leads by `switch_margin` (hysteresis). Scores of evicted keys are remembered.
//   - Sampled shadows (as ARC's and CacheLib's sampled ghost caches): the shadows replay
//     only an evenly spaced sample of each model's layers (one fraction for all models),
//     with the capacity scaled to the sample's share, so they cost a fraction of a full
//     replay per access.
//   - Prefetches enter only if their expected score beats the victim's; seed() gives a
//     key prior popularity (warm-up), capped at the score of a key used every time.
// Thread safety: not thread-safe (see policy.h); even the const victim() refreshes a
// cache of each layer's first key, so no two threads may call any method at once.
#pragma once

#include <array>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "daemon/policy.h"

namespace moepool {

struct AdaptivePolicyOptions {
  std::vector<double> lambdas = {0.1, 1, 4, 16, 64};  // candidate h / slots per layer
  double window_per_slot = 8;   // shadow hit counts halve every this x capacity accesses
  double switch_margin = 0.01;  // relative lead a shadow needs to take over
  std::string name = "adaptive";
  // The shadows replay this fraction of each model's layers (the same for all models),
  // raised until every model has shadow_min_layers of them (or all); 1 = every layer.
  double shadow_fraction = 0.25;
  uint32_t shadow_min_layers = 16;
};

class AdaptivePolicy final : public ResidencyPolicy {
 public:
  static constexpr size_t kMaxCandidates = 8;
  explicit AdaptivePolicy(AdaptivePolicyOptions opt = {});

  std::string name() const override { return opt_.name; }
  void set_capacity(uint32_t slot_class, uint64_t slots) override;
  void set_budget(uint32_t slot_class, uint64_t bytes) override;
  void set_model_bytes(uint64_t model, uint64_t expert_bytes) override;
  void on_access(const PolicyKey& key, uint64_t tick, bool hit) override;
  bool admit(const PolicyKey& key, double p, const PolicyKey* victim) const override;
  void seed(const PolicyKey& key, double weight, uint64_t tick) override;
  void insert(const PolicyKey& key, uint32_t slot_class, uint64_t tick) override;
  std::optional<PolicyKey> victim(uint32_t slot_class, const PolicyProtect& keep) const override;
  void erase(const PolicyKey& key) override;
  size_t size() const override { return resident_; }

  // The lambda the live order follows now; for tests and the simulator's reports.
  double active_lambda() const { return opt_.lambdas[active_]; }
  // log2 of the key's value as the victim order compares it (-inf if never seen).
  double value(const PolicyKey& key) const;

 private:
  using Order = std::set<std::pair<double, PolicyKey>>;  // (log score, key), victim first
  struct Model;
  struct Layer {
    uint64_t model = 0;
    uint32_t number = 0;  // the layer's index in its model
    Model* m = nullptr;   // models_[model] (unordered_map nodes do not move)
    bool sampled = true;  // the shadows replay this layer's accesses
    uint32_t slot_class = 0;
    double clock = 0;  // accesses of this (model, layer) so far
    std::array<Order, kMaxCandidates> shadow;  // per candidate: shadow-resident keys
    Order live;                                // live-resident keys, by the active score
  };
  struct Entry {
    uint32_t layer = 0;  // index into layers_
    double at = 0;       // layer clock of the last credit
    std::array<double, kMaxCandidates> ls;  // per candidate: log2(score) + at / h
    uint32_t in_shadow = 0;                 // bit per candidate
    bool resident = false;
    bool seen = false;
    uint64_t last_tick = ~0ull;  // tick of the last demand or credit
  };
  struct Model {
    double lrate = -1e300;  // log2 of its decayed access count (global ticks)
    uint32_t layers = 0;
    double lbytes = 0;      // log2 of its expert bytes (0: all the same)
  };
  struct ClassState {
    double capacity = 0;  // in size units (slots, or bytes after set_budget)
    bool bytes = false;
    std::array<double, kMaxCandidates> shadow_used{};
    std::vector<uint32_t> layers;   // indices of the layers in this class
    std::vector<uint32_t> sampled;  // those the shadows replay
    double shadow_capacity = 0;     // capacity x the sampled layers' share of the class
  };

  Entry& entry(const PolicyKey& key);
  uint32_t layer_index(const PolicyKey& key);
  ClassState& cls(uint32_t c);
  double size_of(uint64_t model) const;
  double h(size_t c) const { return h_[c]; }
  // log2 value of entry e under candidate c, comparable across layers and models.
  double norm(const Entry& e, size_t c) const;
  // log2 of what one unit of score is worth in layer `l` (its model's access rate per
  // layer per byte); 0 with one model.
  double layer_rate(const Layer& l) const;
  void credit(const PolicyKey& key, Entry& e, double weight);
  void rescale();  // re-derives h from capacity and layers, rebuilding the orders
  // Re-derives which layers the shadows replay and their capacity; returns true if the
  // sample changed (then the shadows were emptied).
  bool resample();
  void shadow_access(const PolicyKey& key, Entry& e, size_t c);
  // The victim of the live order (live) or of candidate c's shadow, skipping keys keep()
  // protects; scan() is one pass over the class's layers.
  std::optional<PolicyKey> pick(const ClassState& cs, size_t c, bool live,
                                const PolicyProtect& keep) const;
  std::optional<PolicyKey> scan(const ClassState& cs, size_t c, bool live,
                                const PolicyProtect& keep) const;
  // scan() without keep, over each layer's cached front (refreshed where dirty), except
  // that a layer listed in `over` is represented by the front given there; sets
  // *winner to the chosen key's layer.
  struct Front;
  std::optional<PolicyKey> scan_fronts(const ClassState& cs, size_t c, bool live,
                                       const std::vector<std::pair<uint32_t, Front>>& over,
                                       uint32_t* winner) const;
  // The layer's order `slot` (a candidate's shadow, or kLive) changed, or its clock did.
  void touch(uint32_t li, size_t slot) { dirty_[li] |= uint16_t(1u << slot); }
  void touch(uint32_t li) { dirty_[li] = 0xFFFF; }
  void touch_all() { std::fill(dirty_.begin(), dirty_.end(), uint16_t{0xFFFF}); }
  void switch_to(size_t c);

  // A layer's order's first key and its value without the model's rate (its order key
  // minus the layer's age), so scans read one compact array instead of every layer's
  // tree; recomputed from the order when the layer's dirty bit for it is set.
  struct Front {
    double v = 0;
    PolicyKey key;
    bool has = false;
  };
  static constexpr size_t kLive = kMaxCandidates;  // the live order's slot in front_

  AdaptivePolicyOptions opt_;
  mutable std::array<std::vector<Front>, kMaxCandidates + 1> front_;  // [slot][layer]
  mutable std::vector<uint16_t> dirty_;  // per layer: bit per slot whose front is stale
  std::vector<double> last_;             // per layer: global tick of its last access
  size_t n_ = 0;  // candidates
  std::array<double, kMaxCandidates> h_{};
  std::array<double, kMaxCandidates> lhits_{};  // log2 of decayed shadow hits
  size_t active_ = 0;
  std::vector<Layer> layers_;
  std::unordered_map<uint64_t, uint32_t> layer_of_;  // (model, layer) -> index
  std::unordered_map<PolicyKey, Entry, PolicyKeyHash> entries_;
  std::unordered_map<uint64_t, Model> models_;
  std::vector<ClassState> classes_;
  size_t resident_ = 0;
  double now_ = 0;  // global tick
  uint32_t current_layer_ = ~0u;  // the layer of the latest access
};

}  // namespace moepool
