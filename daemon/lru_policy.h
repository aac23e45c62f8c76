// Residency v0: least-recently-used order over the slots that may be evicted (resident,
// fully read, unpinned), one list per slot class. Pinned and loading slots are never in
// a list, so they can never be chosen as victims.
// Thread safety: not thread-safe; the ExpertCache calls it under its lock.
#pragma once

#include <cstdint>
#include <list>
#include <optional>
#include <unordered_map>
#include <vector>

namespace moepool {

class LruPolicy {
 public:
  // `slot` became evictable (read completed unpinned, or its last pin went away); it is
  // now the most recently used of its class.
  void add(uint32_t slot_class, uint64_t slot, uint64_t tick) {
    if (lists_.size() <= slot_class) lists_.resize(slot_class + 1);
    auto& l = lists_[slot_class];
    where_[slot] = l.insert(l.end(), {slot, tick});
  }
  // `slot` is no longer evictable (pinned or evicted). No-op if it was not listed.
  void remove(uint32_t slot_class, uint64_t slot) {
    auto it = where_.find(slot);
    if (it == where_.end()) return;
    lists_[slot_class].erase(it->second);
    where_.erase(it);
  }
  bool contains(uint64_t slot) const { return where_.count(slot) != 0; }
  // The least recently used evictable slot of a class and when it was last used.
  std::optional<std::pair<uint64_t, uint64_t>> victim(uint32_t slot_class) const {
    if (slot_class >= lists_.size() || lists_[slot_class].empty()) return std::nullopt;
    const Entry& e = lists_[slot_class].front();
    return std::make_pair(e.slot, e.tick);
  }
  // When `slot` was last used, if it is evictable.
  std::optional<uint64_t> tick_of(uint64_t slot) const {
    auto it = where_.find(slot);
    if (it == where_.end()) return std::nullopt;
    return it->second->tick;
  }

 private:
  struct Entry {
    uint64_t slot;
    uint64_t tick;
  };
  std::vector<std::list<Entry>> lists_;  // per class, least recently used first
  std::unordered_map<uint64_t, std::list<Entry>::iterator> where_;
};

}  // namespace moepool
