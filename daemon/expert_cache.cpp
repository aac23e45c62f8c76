#include "daemon/expert_cache.h"

#include <algorithm>
#include <unordered_set>

namespace moepool {

struct ExpertCache::AcquireOp {
  uint64_t session = 0;
  std::vector<LeaseInfo> leases;       // request order; filled as slots become ready
  std::vector<uint64_t> slots;         // pinned slots, request order
  size_t pending = 0;                  // reads still to complete
  bool finished = false;
  AcquireDone done;
};

namespace {

// The read of projection `t` of `expert` into `region`, its bytes placed at data_at (file
// left unset: the caller knows the model's open files). Used to size slot regions.
ReadSpan span_of(const ProjTensor& t, uint32_t expert, uint8_t* region, uint64_t data_at) {
  Extent x = t.expert_extent(expert);
  return ReadSpan{nullptr, x.offset, x.bytes, region, data_at};
}

}  // namespace

ExpertCache::ExpertCache(Pool* pool, IoEngine* io, std::unique_ptr<ResidencyPolicy> policy)
    : ExpertCache(pool, static_cast<SlotWriter*>(nullptr), std::move(policy)) {
  own_writer_ = std::make_unique<HostSlotWriter>(pool->base(), io);
  writer_ = own_writer_.get();
}

ExpertCache::ExpertCache(Pool* pool, SlotWriter* writer, std::unique_ptr<ResidencyPolicy> policy)
    : pool_(pool), writer_(writer), table_(pool->control()), policy_(std::move(policy)),
      budget_(pool->pool_bytes()) {
  if (!policy_) policy_ = std::move(make_policy("default")).value();  // a known name
  totals_.pool_bytes = pool->pool_bytes();
}

ExpertCache::~ExpertCache() = default;

Status ExpertCache::prepare_model(Model* model) {
  std::lock_guard<std::mutex> lock(mu_);
  model->layouts.clear();
  for (const MoeLayer& layer : model->catalog.layers()) {
    LayerSlotLayout layout;
    uint64_t at = 0;
    for (const ProjTensor& p : layer.projections) {
      // One place per projection for every expert: where an O_DIRECT read lands expert 0.
      // The region must also hold the aligned superset of every other expert's extent; where
      // the expert size is not a multiple of 4096 the misalignment differs per expert, and
      // the I/O engine moves those experts' bytes to the layer's place after the read.
      const uint64_t data_at = data_offset_in_region(p.expert_extent(0).offset);
      uint64_t need = 0;
      for (uint32_t e = 0; e < layer.n_experts; ++e) {
        need = std::max(need, region_capacity_for(span_of(p, e, nullptr, data_at)));
        if (p.expert_bytes % kIoAlign == 0) break;  // same misalignment for all
      }
      layout.region_offset.push_back(at);
      layout.proj_offset.push_back(at + data_at);
      at += need;
    }
    layout.stride = at;
    auto c = pool_->class_for(at);
    if (!c.ok())
      return Status(c.status().code(), "model " + model->catalog.name() + " layer " +
                                           std::to_string(layer.layer) + ": " +
                                           c.status().message());
    layout.slot_class = *c;
    // The policy scales its time constants with how many experts the class can hold:
    // the whole pool's worth, since segments move to the classes that need them.
    if (capacity_told_.size() <= *c) capacity_told_.resize(*c + 1, false);
    if (!capacity_told_[*c]) {
      policy_->set_capacity(*c, pool_->capacity_slots(*c));
      balancer_.set_ghost_capacity(*c, pool_->capacity_slots(*c),
                                   static_cast<double>(pool_->segment_bytes()) / at);
      capacity_told_[*c] = true;
    }
    model->layouts.push_back(std::move(layout));
  }
  budget_.add_model(model->id(), model->catalog.name());
  // A model that demanded nothing while the others demanded four pools' worth of experts
  // (in the smallest class) counts as idle and keeps only its minimum.
  uint64_t most_slots = 0;
  for (uint32_t c = 0; c < pool_->class_count(); ++c)
    most_slots = std::max(most_slots, pool_->capacity_slots(c));
  budget_.set_idle_after(4 * most_slots);
  balancer_.set_window(std::max<uint64_t>(64, most_slots));
  return Status::Ok();
}

void ExpertCache::add_session(uint64_t session) {
  std::lock_guard<std::mutex> lock(mu_);
  session_pins_.try_emplace(session);
}

ExpertCache::SlotInfo& ExpertCache::info(uint64_t slot) {
  if (slots_.size() <= slot) slots_.resize(slot + 1);
  return slots_[slot];
}

Result<ExpertCache::Validated> ExpertCache::validate(const Model& model, uint32_t layer,
                                                     const std::vector<uint32_t>& experts) const {
  int pos = model.layer_pos(layer);
  if (pos < 0)
    return InvalidArgument("layer " + std::to_string(layer) + " of model " +
                           model.catalog.name() + " has no routed experts");
  const MoeLayer& l = model.catalog.layers()[pos];
  if (experts.empty()) return InvalidArgument("no experts requested");
  if (experts.size() > l.n_experts)
    return InvalidArgument("request names " + std::to_string(experts.size()) +
                           " experts but layer " + std::to_string(layer) + " has only " +
                           std::to_string(l.n_experts));
  std::unordered_set<uint32_t> seen;
  for (uint32_t e : experts) {
    if (e >= l.n_experts)
      return InvalidArgument("expert " + std::to_string(e) + " is out of range: layer " +
                             std::to_string(layer) + " of model " + model.catalog.name() +
                             " has experts 0.." + std::to_string(l.n_experts - 1));
    if (!seen.insert(e).second)
      return InvalidArgument("expert " + std::to_string(e) + " is named twice");
  }
  return Validated{pos, &l};
}

void ExpertCache::pin_locked(uint64_t session, uint64_t slot) {
  SlotInfo& s = info(slot);
  if (s.pins++ == 0 && s.model) {
    s.model->counters.pinned++;
    s.model->counters.pinned_bytes += pool_->stride(pool_->slot_class(slot));
  }
  lru_.remove(pool_->slot_class(slot), slot);
  table_.set_pins(slot, s.pins);
  session_pins_[session][slot]++;
}

void ExpertCache::unpin_locked(uint64_t session, uint64_t slot) {
  auto sp = session_pins_.find(session);
  if (sp != session_pins_.end()) {
    auto it = sp->second.find(slot);
    if (it != sp->second.end() && --it->second == 0) sp->second.erase(it);
  }
  SlotInfo& s = info(slot);
  if (s.pins == 0) return;
  if (--s.pins == 0) {
    if (s.model) {
      s.model->counters.pinned--;
      s.model->counters.pinned_bytes -= pool_->stride(pool_->slot_class(slot));
    }
    if (s.state == State::kReady) lru_.add(pool_->slot_class(slot), slot, ++tick_);
  }
  table_.set_pins(slot, s.pins);
}

LeaseInfo ExpertCache::lease_locked(uint64_t slot, bool hit) const {
  const SlotInfo& s = slots_[slot];
  LeaseInfo l;
  l.expert = s.key.expert;
  l.slot_id = slot;
  l.generation = s.generation;
  l.slot_class = pool_->slot_class(slot);
  l.slot_index = pool_->slot_index(slot);
  l.stride = pool_->stride(l.slot_class);
  l.pool_offset = pool_->slot_offset(slot);
  l.projections = s.places;
  l.hit = hit;
  return l;
}

SlotRead ExpertCache::begin_load_locked(uint64_t slot, const std::shared_ptr<Model>& model,
                                           int layer_pos, uint32_t expert, ReadPriority prio) {
  const MoeLayer& layer = model->catalog.layers()[layer_pos];
  const LayerSlotLayout& layout = model->layouts[layer_pos];
  SlotInfo& s = info(slot);
  s.state = State::kLoading;
  s.key = {model->id(), layer.layer, expert};
  s.model = model;
  s.generation = table_.begin_load(slot, model->id(), layer.layer, expert, layout.slot_class);
  s.places.clear();
  s.prefetch = prio == ReadPriority::kPrefetch;
  s.warmup = false;
  s.dropped = false;
  s.cancel = s.prefetch ? std::make_shared<std::atomic<bool>>(false) : nullptr;
  if (s.prefetch) prefetch_loading_bytes_ += layout.stride;
  resident_[s.key] = slot;
  policy_->insert(policy_key(s.key), layout.slot_class, access_tick_);
  model->counters.resident++;
  model->counters.used_bytes += layout.stride;
  totals_.used_bytes += layout.stride;
  budget_.charge(model->id(), static_cast<int64_t>(layout.stride));

  // The slot's bytes are written only through the SlotWriter (host memory or VRAM).
  SlotRead req;
  req.priority = prio;
  req.pool_offset = pool_->slot_offset(slot);
  req.slot_bytes = layout.stride;
  for (size_t p = 0; p < layer.projections.size(); ++p) {
    const ProjTensor& t = layer.projections[p];
    const Extent x = t.expert_extent(expert);
    const uint64_t region = layout.region_offset[p];
    SlotSpan span{&model->files[x.file_index], x.offset, x.bytes, region,
                  layout.proj_offset[p] - region};
    s.places.push_back({t.kind, layout.proj_offset[p], span.bytes});
    req.spans.push_back(span);
  }
  req.cancelled = s.cancel;
  req.done = [this, slot](Status st) { on_read_done(slot, std::move(st)); };
  return req;
}

void ExpertCache::acquire(uint64_t session, std::shared_ptr<Model> model, uint32_t layer,
                          std::vector<uint32_t> experts, AcquireDone done) {
  std::vector<SlotRead> reads;
  std::unique_lock<std::mutex> lock(mu_);
  if (!session_pins_.count(session)) {
    lock.unlock();
    return done(NotFound("session " + std::to_string(session) + " has ended"));
  }
  auto v = validate(*model, layer, experts);
  if (!v.ok()) {
    lock.unlock();
    return done(v.status());
  }
  const LayerSlotLayout& layout = model->layouts[v->layer_pos];
  uint32_t c = layout.slot_class;
  if (experts.size() > pool_->capacity_slots(c)) {
    lock.unlock();
    return done(ResourceExhausted(
        "request needs " + std::to_string(experts.size()) + " slots of " +
        std::to_string(layout.stride) + " bytes but the pool can hold at most " +
        std::to_string(pool_->capacity_slots(c))));
  }
  const Quota quota = budget_.quota(model->catalog.name());
  if (quota.max_bytes && experts.size() * layout.stride > quota.max_bytes) {
    lock.unlock();
    return done(ResourceExhausted(
        "request needs " + std::to_string(experts.size()) + " slots of " +
        std::to_string(layout.stride) + " bytes but model " + model->catalog.name() +
        "'s quota maximum is " + std::to_string(quota.max_bytes) + " bytes"));
  }

  auto op = std::make_shared<AcquireOp>();
  op->session = session;
  op->done = std::move(done);
  op->leases.resize(experts.size());
  std::vector<std::pair<uint64_t, size_t>> loading;  // slot, request index
  bool rebalance_due = false;
  for (size_t i = 0; i < experts.size(); ++i) {
    ExpertKey key{model->id(), layer, experts[i]};
    auto it = resident_.find(key);
    uint64_t slot;
    bool hit = it != resident_.end();
    policy_->on_access(policy_key(key), ++access_tick_, hit);
    budget_.on_access(model->id(), access_tick_);
    rebalance_due |= balancer_.tick();
    if (hit) {
      slot = it->second;
      model->counters.hits++;
      totals_.hits++;
      balancer_.on_hit(static_cast<uint32_t>(pool_->slot_offset(slot) / pool_->segment_bytes()));
    } else {
      balancer_.on_miss(c, policy_key(key));
      auto got = allocate_locked(c, model->id(), /*may_steal=*/true);
      if (!got) {
        const bool at_max = !budget_.under_max(model->id(), layout.stride);
        auto cb = fail_op_locked(op, ResourceExhausted(
            "no free or evictable slot for expert " + std::to_string(experts[i]) +
            " of layer " + std::to_string(layer) + ": " +
            (at_max ? "model " + model->catalog.name() + " is at its quota maximum (" +
                          std::to_string(quota.max_bytes) + " bytes) and its "
                    : std::string("the pool's ")) +
            std::to_string(layout.stride) + "-byte slots are all pinned or loading" +
            (at_max ? "" : " (or held by models within their share)")));
        lock.unlock();
        for (auto& r : reads) writer_->write(std::move(r));
        cb();
        return;
      }
      slot = *got;
      model->counters.misses++;
      totals_.misses++;
      reads.push_back(begin_load_locked(slot, model, v->layer_pos, experts[i],
                                        ReadPriority::kDemand));
    }
    pin_locked(session, slot);
    op->slots.push_back(slot);
    SlotInfo& s = info(slot);
    if (s.state == State::kReady) {
      op->leases[i] = lease_locked(slot, hit);
    } else {
      op->leases[i].hit = hit;
      loading.emplace_back(slot, i);
    }
  }
  op->pending = loading.size();
  for (auto [slot, i] : loading) info(slot).waiters.push_back(op);
  if (rebalance_due) rebalance_locked();  // this request's slots are pinned: never moved
  bool complete = op->pending == 0;
  if (complete) op->finished = true;
  lock.unlock();
  for (auto& r : reads) writer_->write(std::move(r));
  if (complete) op->done(std::move(op->leases));
}

std::function<void()> ExpertCache::fail_op_locked(const std::shared_ptr<AcquireOp>& op,
                                                  Status status) {
  if (op->finished) return [] {};
  op->finished = true;
  if (session_pins_.count(op->session))
    for (uint64_t slot : op->slots) unpin_locked(op->session, slot);
  return [op, status = std::move(status)] { op->done(status); };
}

void ExpertCache::on_read_done(uint64_t slot, Status status) {
  std::vector<std::function<void()>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    SlotInfo& s = info(slot);
    std::vector<std::shared_ptr<AcquireOp>> waiters = std::move(s.waiters);
    s.waiters.clear();
    std::shared_ptr<Model> model = s.model;
    const uint64_t stride = pool_->stride(pool_->slot_class(slot));
    if (s.prefetch) {
      prefetch_loading_bytes_ -= stride;
      s.prefetch = false;
    }
    if (s.warmup) {
      s.warmup = false;
      ModelCounters& mc = model->counters;
      if (s.dropped) {
        mc.warmup_planned--;  // cancelled: neither loaded nor failed
      } else if (status.ok()) {
        mc.warmup_loaded++;
        for (const auto& p : s.places) mc.warmup_bytes_read += p.bytes;
      } else {
        mc.warmup_failed++;
      }
      if (mc.warmup_loaded + mc.warmup_failed == mc.warmup_planned)
        mc.warmup_state = mc.warmup_failed == 0
                              ? "done"
                              : "done, " + std::to_string(mc.warmup_failed) + " reads failed";
    }
    if (s.dropped) {
      // Cancelled while loading (evict_model): nobody waits for it, whatever the status;
      // a cancelled completion is not an error.
      free_unserved_locked(slot);
    } else if (status.ok()) {
      s.state = State::kReady;
      table_.mark_ready(slot);
      uint64_t bytes = 0;
      for (const auto& p : s.places) bytes += p.bytes;
      model->counters.bytes_read += bytes;
      totals_.bytes_read += bytes;
      totals_.reads++;
      if (s.pins == 0) lru_.add(pool_->slot_class(slot), slot, ++tick_);
      for (auto& op : waiters) {
        if (op->finished) continue;
        for (size_t i = 0; i < op->slots.size(); ++i)
          if (op->slots[i] == slot) op->leases[i] = lease_locked(slot, op->leases[i].hit);
        if (--op->pending == 0) {
          op->finished = true;
          if (!session_pins_.count(op->session)) {
            callbacks.push_back([op] { op->done(NotFound("session ended during acquire")); });
          } else {
            callbacks.push_back([op] { op->done(std::move(op->leases)); });
          }
        }
      }
    } else {
      // Never serve the slot: fail every waiter (dropping their pins), then free it.
      model->counters.read_errors++;
      totals_.read_errors++;
      Status err(Code::kUnavailable, "reading expert " + std::to_string(s.key.expert) +
                                         " of layer " + std::to_string(s.key.layer) +
                                         " of model " + model->catalog.name() + ": " +
                                         status.message());
      for (auto& op : waiters) callbacks.push_back(fail_op_locked(op, err));
      free_unserved_locked(slot);
    }
  }
  for (auto& cb : callbacks) cb();
}

Status ExpertCache::release(uint64_t session, const std::vector<LeaseRef>& refs) {
  std::lock_guard<std::mutex> lock(mu_);
  auto sp = session_pins_.find(session);
  if (sp == session_pins_.end())
    return NotFound("session " + std::to_string(session) + " has ended");
  std::unordered_map<uint64_t, uint32_t> want;
  for (const LeaseRef& r : refs) {
    auto held = sp->second.find(r.slot_id);
    if (r.slot_id >= slots_.size() || held == sp->second.end())
      return InvalidArgument("lease on slot " + std::to_string(r.slot_id) +
                             " is not held by this session");
    if (slots_[r.slot_id].generation != r.generation)
      return InvalidArgument("lease on slot " + std::to_string(r.slot_id) + " is stale (generation " +
                             std::to_string(r.generation) + ", slot is at " +
                             std::to_string(slots_[r.slot_id].generation) + ")");
    if (++want[r.slot_id] > held->second)
      return InvalidArgument("slot " + std::to_string(r.slot_id) + " released more often than pinned");
  }
  for (const LeaseRef& r : refs) unpin_locked(session, r.slot_id);
  return Status::Ok();
}

Result<uint32_t> ExpertCache::prefetch(std::shared_ptr<Model> model, uint32_t layer,
                                       std::vector<uint32_t> experts,
                                       std::vector<double> probabilities, PrefetchSource source) {
  if (!probabilities.empty() && probabilities.size() != experts.size())
    return InvalidArgument("prefetch names " + std::to_string(experts.size()) + " experts but " +
                           std::to_string(probabilities.size()) + " probabilities");
  for (double p : probabilities)
    if (!(p >= 0 && p <= 1))
      return InvalidArgument("prefetch probability " + std::to_string(p) + " is outside [0, 1]");
  std::vector<SlotRead> reads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto v = validate(*model, layer, experts);
    if (!v.ok()) return v.status();
    const LayerSlotLayout& layout = model->layouts[v->layer_pos];
    uint32_t c = layout.slot_class;
    for (size_t i = 0; i < experts.size(); ++i) {
      uint32_t e = experts[i];
      if (resident_.count({model->id(), layer, e})) continue;
      // The cap bounds prefetch bytes still loading, but one prefetch may always start when
      // none is loading: an expert larger than the cap (DeepSeek's 24 MB against the
      // default 16 MiB) would otherwise never be prefetched.
      if (prefetch_cap_ && prefetch_loading_bytes_ > 0 &&
          prefetch_loading_bytes_ + layout.stride > prefetch_cap_)
        break;
      // Not a demand: no on_access; the policy decides whether the hint is worth a slot.
      PolicyKey key{model->id(), layer, e};
      auto slot = allocate_locked(c, model->id(), /*may_steal=*/false, &key,
                                  probabilities.empty() ? 1.0 : probabilities[i]);
      if (!slot) continue;
      model->counters.prefetches++;
      if (source == PrefetchSource::kPredictor) model->counters.predicted_prefetches++;
      totals_.prefetches++;
      reads.push_back(begin_load_locked(*slot, model, v->layer_pos, e, ReadPriority::kPrefetch));
    }
  }
  for (auto& r : reads) writer_->write(std::move(r));
  return static_cast<uint32_t>(reads.size());
}

Result<uint32_t> ExpertCache::warm(std::shared_ptr<Model> model, std::vector<WarmItem> items) {
  std::vector<SlotRead> reads;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const WarmItem& it : items) {
      int pos = model->layer_pos(it.layer);
      if (pos < 0 || it.expert >= model->catalog.layers()[pos].n_experts)
        return InvalidArgument("warm-up names expert " + std::to_string(it.expert) +
                               " of layer " + std::to_string(it.layer) + ", which model " +
                               model->catalog.name() + " does not have");
    }
    model->counters.warmup_planned = 0;
    model->counters.warmup_state = "running";
    const uint64_t share = budget_.share(model->id(), access_tick_);
    for (const WarmItem& it : items) {
      int pos = model->layer_pos(it.layer);
      PolicyKey key{model->id(), it.layer, it.expert};
      policy_->seed(key, it.score, access_tick_);
      if (resident_.count({model->id(), it.layer, it.expert})) continue;
      const LayerSlotLayout& layout = model->layouts[pos];
      if (share && budget_.used(model->id()) + layout.stride > share) continue;
      auto slot = pool_->take_free_slot(layout.slot_class);
      if (!slot) continue;
      model->counters.prefetches++;
      model->counters.warmup_planned++;
      totals_.prefetches++;
      reads.push_back(begin_load_locked(*slot, model, pos, it.expert, ReadPriority::kPrefetch));
      info(*slot).warmup = true;
    }
    if (reads.empty()) model->counters.warmup_state = "done";
  }
  for (auto& r : reads) writer_->write(std::move(r));
  return static_cast<uint32_t>(reads.size());
}

void ExpertCache::set_prefetch_cap(uint64_t bytes) {
  std::lock_guard<std::mutex> lock(mu_);
  prefetch_cap_ = bytes;
}

Status ExpertCache::set_quota(const std::string& model_name, const Quota& q) {
  std::lock_guard<std::mutex> lock(mu_);
  return budget_.set_quota(model_name, q);
}

QuotaView ExpertCache::quota_of(const Model& model) const {
  std::lock_guard<std::mutex> lock(mu_);
  QuotaView v = budget_.view(model.id(), access_tick_);
  if (v.share_bytes == 0 && !v.active) v.quota = budget_.quota(model.catalog.name());
  return v;
}

void ExpertCache::remove_model(const Model& model) {
  std::lock_guard<std::mutex> lock(mu_);
  budget_.remove_model(model.id());
}

std::vector<SlotClassView> ExpertCache::class_stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  std::vector<SlotClassView> out(pool_->class_count());
  for (uint32_t c = 0; c < out.size(); ++c) out[c].stride = pool_->stride(c);
  for (uint32_t seg = 0; seg < pool_->segment_count(); ++seg) {
    uint32_t o = pool_->segment_owner(seg);
    if (o != Pool::kNoClass) out[o].segments++;
  }
  for (uint64_t slot = 0; slot < slots_.size(); ++slot)
    if (slots_[slot].state != State::kFree) out[pool_->slot_class(slot)].slots_used++;
  for (uint32_t c = 0; c < out.size(); ++c) {
    out[c].ghost_hits = balancer_.ghost_hits(c);
    if (c < class_moves_.size()) {
      out[c].segments_in = class_moves_[c].first;
      out[c].segments_out = class_moves_[c].second;
    }
  }
  return out;
}

uint64_t ExpertCache::segment_moves() const {
  std::lock_guard<std::mutex> lock(mu_);
  return segment_moves_;
}

void ExpertCache::release_session(uint64_t session) {
  std::lock_guard<std::mutex> lock(mu_);
  auto sp = session_pins_.find(session);
  if (sp == session_pins_.end()) return;
  std::unordered_map<uint64_t, uint32_t> pins = std::move(sp->second);
  session_pins_.erase(sp);
  for (auto [slot, n] : pins) {
    SlotInfo& s = info(slot);
    uint32_t drop = std::min(n, s.pins);
    s.pins -= drop;
    if (drop && s.pins == 0) {
      if (s.model) {
        s.model->counters.pinned--;
        s.model->counters.pinned_bytes -= pool_->stride(pool_->slot_class(slot));
      }
      if (s.state == State::kReady) lru_.add(pool_->slot_class(slot), slot, ++tick_);
    }
    table_.set_pins(slot, s.pins);
  }
}

std::pair<uint64_t, uint64_t> ExpertCache::evict_model(uint64_t model_id) {
  std::lock_guard<std::mutex> lock(mu_);
  uint64_t evicted = 0, pinned = 0;
  for (uint64_t slot = 0; slot < slots_.size(); ++slot) {
    SlotInfo& s = slots_[slot];
    if (s.state == State::kFree || s.dropped || s.key.model_id != model_id) continue;
    if (s.state == State::kLoading && cancel_loading_locked(slot)) {
      evicted++;
      continue;
    }
    if (s.pins > 0 || s.state == State::kLoading) {
      pinned++;
      continue;
    }
    evict_locked(slot);
    evicted++;
  }
  return {evicted, pinned};
}

CacheStats ExpertCache::stats() const {
  UploadStats upload = writer_->stats();  // the writer's own lock, never nested in mu_
  std::lock_guard<std::mutex> lock(mu_);
  CacheStats st = totals_;
  st.backend = writer_->backend();
  st.upload = upload;
  st.pinned_bytes = 0;
  for (uint64_t slot = 0; slot < slots_.size(); ++slot)
    if (slots_[slot].pins) st.pinned_bytes += pool_->stride(pool_->slot_class(slot));
  return st;
}

ModelCounters ExpertCache::model_counters(const Model& model) const {
  std::lock_guard<std::mutex> lock(mu_);
  return model.counters;
}

}  // namespace moepool
