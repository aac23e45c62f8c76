// Where a missing expert's slot comes from: a free slot; else the residency policy's
// victim among the experts of the models the shared budget lets lose memory (budget.h);
// else a whole segment of another slot class holding only such experts. And the class
// rebalancer, which moves segments between classes by measured benefit
// (class_balancer.h). And how a slot whose read completes unserved (failed, or a prefetch
// cancelled by evict_model) is freed. All under the cache's lock.
#include <algorithm>
#include <unordered_map>

#include "daemon/expert_cache.h"

namespace moepool {

namespace {

bool contains(const std::vector<uint64_t>& models, uint64_t m) {
  return std::find(models.begin(), models.end(), m) != models.end();
}

}  // namespace

void ExpertCache::evict_locked(uint64_t slot) {
  SlotInfo& s = info(slot);
  const uint32_t c = pool_->slot_class(slot);
  const uint64_t stride = pool_->stride(c);
  lru_.remove(c, slot);
  resident_.erase(s.key);
  policy_->erase(policy_key(s.key));
  balancer_.on_evict(c, policy_key(s.key));
  if (s.model) {
    s.model->counters.evictions++;
    s.model->counters.resident--;
    s.model->counters.used_bytes -= stride;
    budget_.charge(s.model->id(), -static_cast<int64_t>(stride));
  }
  totals_.evictions++;
  totals_.used_bytes -= stride;
  table_.mark_free(slot);
  s.state = State::kFree;
  s.model.reset();
  s.places.clear();
  pool_->return_slot(slot);
}

void ExpertCache::free_unserved_locked(uint64_t slot) {
  SlotInfo& s = info(slot);
  const uint64_t stride = pool_->stride(pool_->slot_class(slot));
  table_.mark_free(slot);
  if (!s.dropped) {  // a dropped slot's key went at cancel time (it may be loading again)
    resident_.erase(s.key);
    policy_->erase(policy_key(s.key));
  }
  s.model->counters.resident--;
  s.model->counters.used_bytes -= stride;
  totals_.used_bytes -= stride;
  budget_.charge(s.model->id(), -static_cast<int64_t>(stride));
  s.state = State::kFree;
  s.dropped = false;
  s.cancel.reset();
  if (s.pins == 0) {
    s.model.reset();
    s.places.clear();
    pool_->return_slot(slot);
  }
  // A slot still pinned here would belong to a session that vanished mid-read; the
  // pins were already dropped with the session, so s.pins is 0 in practice.
}

bool ExpertCache::cancel_loading_locked(uint64_t slot) {
  SlotInfo& s = info(slot);
  if (s.state != State::kLoading || !s.cancel || s.dropped || s.pins > 0 || !s.waiters.empty())
    return false;
  s.cancel->store(true, std::memory_order_relaxed);
  s.dropped = true;
  table_.mark_free(slot);  // never to be served, whatever the read returns
  resident_.erase(s.key);
  policy_->erase(policy_key(s.key));
  return true;
}

std::optional<uint64_t> ExpertCache::victim_locked(uint32_t c,
                                                   const std::vector<uint64_t>& models) const {
  // keep: pinned or loading slots are never victims (invariant 2; exactly the evictable
  // slots are in lru_), nor experts of models the budget does not let lose memory.
  auto keep = [&](const PolicyKey& k) {
    if (!contains(models, k.model)) return true;
    auto it = resident_.find({k.model, k.layer, k.expert});
    return it == resident_.end() || !lru_.contains(it->second);
  };
  auto v = policy_->victim(c, keep);
  if (!v) return std::nullopt;
  return resident_.at({v->model, v->layer, v->expert});
}

std::optional<uint32_t> ExpertCache::movable_segment_locked(
    uint32_t to_class, const std::vector<uint64_t>& models) const {
  std::optional<uint32_t> best;
  for (uint32_t seg = 0; seg < pool_->segment_count(); ++seg) {
    const uint32_t owner = pool_->segment_owner(seg);
    if (owner == Pool::kNoClass || owner == to_class) continue;
    const uint64_t stride = pool_->stride(owner);
    std::unordered_map<uint64_t, uint64_t> bytes_of;  // model -> bytes this segment holds
    bool ok = true;
    for (uint64_t slot : pool_->slots_touching(seg)) {
      if (slot >= slots_.size() || slots_[slot].state == State::kFree) continue;
      const SlotInfo& s = slots_[slot];
      if (!lru_.contains(slot) || !contains(models, s.key.model_id)) {
        ok = false;  // pinned, loading, or a model that may not lose memory
        break;
      }
      bytes_of[s.key.model_id] += stride;
    }
    // Never below a model's minimum.
    for (auto [m, b] : bytes_of)
      if (budget_.used(m) < b || budget_.used(m) - b < budget_.min_bytes(m)) ok = false;
    if (!ok) continue;
    if (!best || balancer_.segment_hits(seg) < balancer_.segment_hits(*best)) best = seg;
  }
  return best;
}

void ExpertCache::move_segment_locked(uint32_t seg, uint32_t to_class) {
  const uint32_t from = pool_->segment_owner(seg);
  for (uint64_t slot : pool_->slots_touching(seg))
    if (slot < slots_.size() && slots_[slot].state != State::kFree) evict_locked(slot);
  pool_->release_segment(seg);
  balancer_.forget_segment(seg);
  if (to_class != Pool::kNoClass) pool_->assign_segment(seg, to_class);
  class_moves_.resize(pool_->class_count());
  class_moves_[from].second++;
  if (to_class != Pool::kNoClass) class_moves_[to_class].first++;
  segment_moves_++;
}

std::optional<uint64_t> ExpertCache::allocate_locked(uint32_t c, uint64_t taker, bool may_steal,
                                                     const PolicyKey* admit_key, double admit_p) {
  const uint64_t stride = pool_->stride(c);
  const bool room = budget_.under_max(taker, stride);
  if (room) {
    if (auto slot = pool_->take_free_slot(c)) {
      if (admit_key && !policy_->admit(*admit_key, admit_p, nullptr)) {
        pool_->return_slot(*slot);
        return std::nullopt;
      }
      return slot;
    }
  }
  const Budget::Donors donors = budget_.donors(taker, stride, access_tick_);
  for (const std::vector<uint64_t>* tier : {&donors.first, &donors.then}) {
    if (tier->empty()) continue;
    if (auto victim = victim_locked(c, *tier)) {
      if (admit_key) {
        PolicyKey vk = policy_key(info(*victim).key);
        if (!policy_->admit(*admit_key, admit_p, &vk)) return std::nullopt;
      }
      evict_locked(*victim);
      return pool_->take_free_slot(c);
    }
    // Nothing of the tier in this class: a class that has (almost) no memory takes a whole
    // segment of another class holding only the tier's experts, the one serving fewest hits.
    if (may_steal && room) {
      if (auto seg = movable_segment_locked(c, *tier)) {
        move_segment_locked(*seg, c);
        if (auto slot = pool_->take_free_slot(c)) return slot;
      }
    }
  }
  return std::nullopt;
}

void ExpertCache::rebalance_locked() {
  const int r = balancer_.best_receiver();
  if (r >= 0) {
    const uint32_t to = static_cast<uint32_t>(r);
    // Memory may come from models over their share and from the receiving class's own
    // models (it is their memory moving to where it serves more hits).
    std::vector<uint64_t> models;
    for (uint64_t slot = 0; slot < slots_.size(); ++slot) {
      const SlotInfo& s = slots_[slot];
      if (s.state == State::kFree || contains(models, s.key.model_id)) continue;
      if (pool_->slot_class(slot) == to ||
          budget_.used(s.key.model_id) > budget_.share(s.key.model_id, access_tick_))
        models.push_back(s.key.model_id);
    }
    if (auto seg = movable_segment_locked(to, models)) {
      if (ClassBalancer::should_move(balancer_.gain(to), balancer_.segment_hits(*seg))) {
        move_segment_locked(*seg, to);
      }
    }
  }
  balancer_.end_window();
}

}  // namespace moepool
