#include "daemon/policy_lru.h"

namespace moepool {

void LruResidencyPolicy::on_access(const PolicyKey& key, uint64_t tick, bool hit) {
  auto it = where_.find(key);
  if (it == where_.end()) return;
  auto& l = lists_[it->second.slot_class];
  l.splice(l.end(), l, it->second.it);
}

void LruResidencyPolicy::insert(const PolicyKey& key, uint32_t slot_class, uint64_t tick) {
  erase(key);
  if (lists_.size() <= slot_class) lists_.resize(slot_class + 1);
  auto& l = lists_[slot_class];
  where_[key] = Place{slot_class, l.insert(l.end(), key)};
}

std::optional<PolicyKey> LruResidencyPolicy::victim(uint32_t slot_class,
                                                    const PolicyProtect& keep) const {
  if (slot_class >= lists_.size()) return std::nullopt;
  for (const PolicyKey& k : lists_[slot_class])
    if (!keep || !keep(k)) return k;
  return std::nullopt;
}

void LruResidencyPolicy::erase(const PolicyKey& key) {
  auto it = where_.find(key);
  if (it == where_.end()) return;
  lists_[it->second.slot_class].erase(it->second.it);
  where_.erase(it);
}

}  // namespace moepool
