// The pool's one budget, shared by every open model: per-model quotas (weight, minimum,
// maximum) and what each model is entitled to right now. A model's share is its weight's
// part of the pool among the *active* models (those that demanded experts recently),
// clamped to [min, max]; an idle model keeps only its minimum. A model may hold more than
// its share while nobody else needs the memory (it borrows); a model under its share
// takes memory back from the models most over theirs. Pinned bytes count as the model's
// own. The ExpertCache asks which models may lose a slot; it owns residency itself.
// Thread safety: not thread-safe; the ExpertCache calls it under its lock.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace moepool {

struct Quota {
  double weight = 1.0;     // > 0: relative share among active models
  uint64_t min_bytes = 0;  // kept even when idle; the sum over models must fit the pool
  uint64_t max_bytes = 0;  // 0: no maximum; the model never holds more (pins included)
  bool operator==(const Quota&) const = default;
};

struct QuotaView {
  Quota quota;
  uint64_t share_bytes = 0;  // entitlement now
  bool active = false;
};

class Budget {
 public:
  explicit Budget(uint64_t pool_bytes) : pool_bytes_(pool_bytes) {}

  // Sets the quota of the model called `name` (applies whenever it is open). Errors:
  // weight not > 0, max below min, minimums summing past the pool.
  Status set_quota(const std::string& name, const Quota& q);
  Quota quota(const std::string& name) const;

  // A model with this id and name opened / closed (its usage is the cache's to report).
  void add_model(uint64_t id, const std::string& name);
  void remove_model(uint64_t id);
  // Model `id` demanded an expert at logical time `tick` (one tick per demanded expert).
  void on_access(uint64_t id, uint64_t tick);
  // Slot bytes model `id` holds changed by `delta` (load, eviction, failed read).
  void charge(uint64_t id, int64_t delta);

  uint64_t used(uint64_t id) const;
  uint64_t min_bytes(uint64_t id) const;
  // Entitlement of model `id` at logical time `now` (see the file comment).
  uint64_t share(uint64_t id, uint64_t now) const;
  bool active(uint64_t id, uint64_t now) const;
  QuotaView view(uint64_t id, uint64_t now) const;

  // Whether model `id` may hold `bytes` more without passing its maximum.
  bool under_max(uint64_t id, uint64_t bytes) const;
  // Models that may lose `bytes` of slots when model `taker` needs them at time `now`, in
  // two tiers: the cache evicts the policy's victim among the first tier's experts, and
  // only when that tier has none evictable, among the second's. A taker at its maximum:
  // {itself}, {}. A taker under its share (reclaiming): {models over their share}, {itself}.
  // Else (borrowing): {itself and the models over their share}, {}. Never a model that
  // would fall below its minimum, except the taker evicting its own.
  struct Donors {
    std::vector<uint64_t> first, then;
  };
  Donors donors(uint64_t taker, uint64_t bytes, uint64_t now) const;

  // Accesses without a demand after which a model counts as idle.
  void set_idle_after(uint64_t ticks) { idle_after_ = ticks; }

 private:
  struct Entry {
    std::string name;
    uint64_t used = 0;
    uint64_t last_access = 0;
    bool accessed = false;
  };
  uint64_t pool_bytes_;
  uint64_t idle_after_ = 0;  // 0: derived from the pool (see budget.cpp)
  std::unordered_map<std::string, Quota> quotas_;  // by model name
  std::unordered_map<uint64_t, Entry> models_;     // open models by id
};

}  // namespace moepool
