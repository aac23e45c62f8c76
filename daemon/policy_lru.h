// Plain LRU residency, the daemon's v0 order: the victim is the resident key demanded
// (or inserted) longest ago; every prefetch is admitted.
// Thread safety: not thread-safe (see policy.h).
#pragma once

#include <list>
#include <unordered_map>
#include <vector>

#include "daemon/policy.h"

namespace moepool {

class LruResidencyPolicy final : public ResidencyPolicy {
 public:
  std::string name() const override { return "lru"; }
  void on_access(const PolicyKey& key, uint64_t tick, bool hit) override;
  bool admit(const PolicyKey& key, double p, const PolicyKey* victim) const override {
    return true;
  }
  void insert(const PolicyKey& key, uint32_t slot_class, uint64_t tick) override;
  std::optional<PolicyKey> victim(uint32_t slot_class, const PolicyProtect& keep) const override;
  void erase(const PolicyKey& key) override;
  size_t size() const override { return where_.size(); }

 private:
  struct Place {
    uint32_t slot_class;
    std::list<PolicyKey>::iterator it;
  };
  std::vector<std::list<PolicyKey>> lists_;  // per class, least recently used first
  std::unordered_map<PolicyKey, Place, PolicyKeyHash> where_;
};

}  // namespace moepool
