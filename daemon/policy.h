// Residency policy: decides which experts stay in the pool. It sees only keys (model,
// layer, expert) and a logical clock, never the pool, I/O or RPC, so the daemon and
// moepool-sim run the very same code. The caller owns residency: it reports accesses,
// asks admit() before a prefetch may take a slot, reports insert()/erase() of resident
// keys, and asks victim() which resident key to evict, passing what it must keep
// (working-set protection: whatever the current step pinned is never a victim).
// Thread safety: not thread-safe; one owner (the ExpertCache under its lock, or the
// simulator's thread) calls it.
#pragma once

#include <compare>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"

namespace moepool {

struct PolicyKey {
  uint64_t model = 0;  // the model's identity (the daemon's model id, the sim's index)
  uint32_t layer = 0;
  uint32_t expert = 0;
  auto operator<=>(const PolicyKey&) const = default;
};

struct PolicyKeyHash {
  size_t operator()(const PolicyKey& k) const {
    uint64_t h = k.model * 0x9E3779B97F4A7C15ull ^ (uint64_t{k.layer} << 32 | k.expert);
    h ^= h >> 29;
    h *= 0xBF58476D1CE4E5B9ull;
    return static_cast<size_t>(h ^ (h >> 32));
  }
};

// Returns true for a resident key that must not be evicted now (pinned, loading, or in
// the current step's working set).
using PolicyProtect = std::function<bool(const PolicyKey&)>;

class ResidencyPolicy {
 public:
  virtual ~ResidencyPolicy() = default;
  // The policy's name as `make_policy` accepts it.
  virtual std::string name() const = 0;
  // The cache has room for `slots` experts of `slot_class`; policies that scale their
  // time constants with capacity re-derive them here. Optional; call before use.
  virtual void set_capacity(uint32_t slot_class, uint64_t slots) {}
  // A worker demanded `key` at logical time `tick` (non-decreasing across calls); `hit`
  // says whether it was resident (ready or loading). Called before insert() on a miss.
  virtual void on_access(const PolicyKey& key, uint64_t tick, bool hit) = 0;
  // Whether a prefetch of `key`, expected to be used with probability `p` in [0, 1], is
  // worth evicting `victim` (nullptr: a free slot would be used).
  virtual bool admit(const PolicyKey& key, double p, const PolicyKey* victim) const = 0;
  // Prior popularity of `key` (e.g. counts saved by an earlier run), to start its score
  // from when it is inserted by warm-up. Optional; policies without a score ignore it.
  virtual void seed(const PolicyKey& key, double weight, uint64_t tick) {}
  // The class holds experts of several sizes within `bytes` (instead of set_capacity's
  // slot count); pair it with set_model_bytes(). Optional; policies that count slots
  // ignore it.
  virtual void set_budget(uint32_t slot_class, uint64_t bytes) {}
  // Every expert of `model` takes `expert_bytes`; policies that weigh value per byte use
  // it when models of different sizes share a budget. Optional.
  virtual void set_model_bytes(uint64_t model, uint64_t expert_bytes) {}
  // `key` now occupies a slot of `slot_class` (demand miss or admitted prefetch).
  virtual void insert(const PolicyKey& key, uint32_t slot_class, uint64_t tick) = 0;
  // The resident key of `slot_class` to evict next, skipping keys `keep` protects;
  // nullopt when every resident key of the class is protected (or there is none).
  virtual std::optional<PolicyKey> victim(uint32_t slot_class, const PolicyProtect& keep) const = 0;
  // `key` left the pool (evicted, failed read, model closed). No-op if not resident.
  virtual void erase(const PolicyKey& key) = 0;
  // Number of resident keys the policy tracks.
  virtual size_t size() const = 0;
};

// Names make_policy accepts, the default first.
std::string_view default_policy_name();
// Builds a policy by name: "lru" (the daemon's v0 order), "lfu" (decayed frequency),
// "lrfu" / "default" (decayed frequency and recency, half-life scaled to capacity),
// "slru" (segmented LRU with a frequency-gated admission filter), "adaptive" (the default
// now: decayed frequency on each layer's own clock, recency/frequency balance chosen
// online by shadow caches replaying a sample of the layers), "adaptive-full" (the same
// with shadows replaying every layer) and "stale/L" (the same fixed at one balance L).
Result<std::unique_ptr<ResidencyPolicy>> make_policy(std::string_view name);

}  // namespace moepool
