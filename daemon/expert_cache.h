// Decides which experts are resident in the pool and hands out pinned leases on them.
// acquire() pins what is resident and starts reads (through the IoEngine) for what is
// not; its callback runs once every expert of the request is resident, or once one of
// them failed (then nothing of the request stays pinned). Misses that find no free slot
// evict the ResidencyPolicy's victim (daemon/policy.h) among the unpinned, fully read
// experts of the same slot class, or take a whole segment from another class when its
// experts were all used longer ago than that victim. Prefetches enter through the
// policy's admit(). A request that cannot fit fails at once with kResourceExhausted
// instead of waiting.
//
// Invariants kept here: a pinned or loading slot is never evicted or overwritten; a
// slot is served (its lease returned) only after its read completed without error; a
// session's pins all go away with release_session().
// Thread safety: every public method may be called from any thread; callbacks run
// without the lock held, on the caller's thread or the IoEngine's thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "common/catalog.h"
#include "common/status.h"
#include "daemon/budget.h"
#include "daemon/class_balancer.h"
#include "daemon/io_engine.h"
#include "daemon/lru_policy.h"
#include "daemon/model.h"
#include "daemon/policy.h"
#include "daemon/pool.h"
#include "daemon/slot_table.h"
#include "daemon/slot_writer.h"

namespace moepool {

struct ProjectionPlace {
  ProjKind kind;
  uint64_t offset;  // inside the slot; the same for every expert of a layer
  uint64_t bytes;
};

struct LeaseInfo {
  uint32_t expert = 0;
  uint64_t slot_id = 0;
  uint64_t generation = 0;
  uint32_t slot_class = 0;
  uint64_t slot_index = 0;
  uint64_t stride = 0;
  uint64_t pool_offset = 0;
  std::vector<ProjectionPlace> projections;
  bool hit = false;
};

struct LeaseRef {
  uint64_t slot_id;
  uint64_t generation;
};

// Why a low-priority read was started (counted per model).
enum class PrefetchSource { kHint, kPredictor, kWarmup };

// One expert for warm-up, in the order the reads should be issued (file order).
struct WarmItem {
  uint32_t layer = 0, expert = 0;
  double score = 0;  // persisted popularity; seeds the policy
};

struct SlotClassView {
  uint64_t stride = 0;
  uint32_t segments = 0;
  uint64_t slots_used = 0;
  uint64_t ghost_hits = 0;
  uint64_t segments_in = 0, segments_out = 0;
};

struct CacheStats {
  uint64_t pool_bytes = 0, used_bytes = 0, pinned_bytes = 0;
  uint64_t hits = 0, misses = 0, bytes_read = 0, reads = 0, read_errors = 0;
  uint64_t evictions = 0, prefetches = 0;
  std::string backend = "host";  // the SlotWriter's: "host" or "vulkan"
  UploadStats upload;            // staging -> VRAM copies (zero for the host backend)
};

class ExpertCache {
 public:
  using AcquireDone = std::function<void(Result<std::vector<LeaseInfo>>)>;

  // `policy` decides residency (null: make_policy("default")). Reads go straight into
  // the host pool's slots (a HostSlotWriter on `io`).
  ExpertCache(Pool* pool, IoEngine* io, std::unique_ptr<ResidencyPolicy> policy = nullptr);
  // Reads go through `writer` (daemon/slot_writer.h), e.g. the VRAM backend's staging and
  // transfer queue; the writer outlives the cache.
  ExpertCache(Pool* pool, SlotWriter* writer, std::unique_ptr<ResidencyPolicy> policy = nullptr);
  // The IoEngine (and the writer) must be stopped first: their callbacks call into the cache.
  ~ExpertCache();

  // Computes the slot layout of every MoE layer of `model` (creating slot classes) and
  // adds the model to the shared budget. Fails when an expert cannot fit in a slot.
  Status prepare_model(Model* model);

  // Registers a live session (its pins are tracked until release_session).
  void add_session(uint64_t session);
  // Pins `experts` of `layer` for `session`; calls `done` exactly once.
  void acquire(uint64_t session, std::shared_ptr<Model> model, uint32_t layer,
               std::vector<uint32_t> experts, AcquireDone done);
  // Unpins leases of `session`. All refs are checked first; any unknown or stale ref
  // fails the whole call and changes nothing.
  Status release(uint64_t session, const std::vector<LeaseRef>& refs);
  // Starts low-priority reads for experts not resident when a slot is free, or when the
  // policy admits the expert over its victim (hints count as certain: p = 1). Returns how
  // many reads it started. Never pins, never evicts pinned or loading slots.
  // `probabilities` (parallel to experts; empty = all 1) go to the policy's admit().
  // Stops starting reads once the prefetch bytes still loading reach the cap.
  Result<uint32_t> prefetch(std::shared_ptr<Model> model, uint32_t layer,
                            std::vector<uint32_t> experts,
                            std::vector<double> probabilities = {},
                            PrefetchSource source = PrefetchSource::kHint);
  // Warm-up of a model just opened: seeds the policy with each item's score and starts
  // low-priority reads, in the given order, for items that fit in free slots within the
  // model's share (never evicts). Counts planned / loaded experts and bytes in the
  // model's counters (warmup_*). Returns how many reads it started.
  Result<uint32_t> warm(std::shared_ptr<Model> model, std::vector<WarmItem> items);
  // Caps the bytes of prefetch reads (any source) still loading; 0 = no cap. One prefetch
  // may start when none is loading, whatever its size.
  void set_prefetch_cap(uint64_t bytes);

  // Quotas (see daemon/budget.h), by model name; apply whenever the model is open.
  Status set_quota(const std::string& model_name, const Quota& q);
  QuotaView quota_of(const Model& model) const;
  // A model no longer served (prepare_model() made it join the shared budget).
  void remove_model(const Model& model);

  std::vector<SlotClassView> class_stats() const;
  uint64_t segment_moves() const;
  // Drops every pin of `session` and forgets it. Idempotent.
  void release_session(uint64_t session);
  // Evicts every resident unpinned expert of a model and cancels its prefetches still
  // loading that no acquire waits for (the I/O engine skips their remaining reads; the
  // slot is freed, without an error, when the read completes). Returns {evicted (incl.
  // cancelled), still pinned or loading for a demand}.
  std::pair<uint64_t, uint64_t> evict_model(uint64_t model_id);

  CacheStats stats() const;
  // Per-model counters (copied under the lock).
  ModelCounters model_counters(const Model& model) const;

 private:
  struct AcquireOp;
  enum class State { kFree, kLoading, kReady };
  struct ExpertKey {
    uint64_t model_id;
    uint32_t layer, expert;
    bool operator==(const ExpertKey& o) const {
      return model_id == o.model_id && layer == o.layer && expert == o.expert;
    }
  };
  struct KeyHash {
    size_t operator()(const ExpertKey& k) const {
      return std::hash<uint64_t>()(k.model_id ^ (uint64_t{k.layer} << 32 | k.expert) * 0x9E3779B97F4A7C15ull);
    }
  };
  struct SlotInfo {
    State state = State::kFree;
    ExpertKey key{};
    std::shared_ptr<Model> model;
    uint32_t pins = 0;
    uint64_t generation = 0;
    std::vector<ProjectionPlace> places;
    std::vector<std::shared_ptr<AcquireOp>> waiters;  // ops waiting for this read
    bool prefetch = false;  // loading at low priority (counts against prefetch_cap_)
    bool warmup = false;    // loading for warm(): counted in the model's warmup_*
    // A prefetch's cancel flag (ReadRequest::cancelled); null for demand reads.
    std::shared_ptr<std::atomic<bool>> cancel;
    // Loading, but no longer wanted (cancelled): not in resident_ nor the policy, never
    // served; freed without an error when its read completes.
    bool dropped = false;
  };
  struct Validated {
    int layer_pos;
    const MoeLayer* layer;
  };

  Result<Validated> validate(const Model& model, uint32_t layer,
                             const std::vector<uint32_t>& experts) const;
  SlotInfo& info(uint64_t slot);
  static PolicyKey policy_key(const ExpertKey& k) { return {k.model_id, k.layer, k.expert}; }
  // The policy's victim in class c among the evictable slots of `models` (never pinned or
  // loading).
  std::optional<uint64_t> victim_locked(uint32_t c, const std::vector<uint64_t>& models) const;
  // Finds a slot of class c for model `taker`: a free one (within its maximum), else the
  // policy's victim among the budget's donors, else (may_steal) a segment of another class
  // holding only donors' evictable experts. A prefetch (`admit_key` set, expected use
  // `admit_p`) only evicts a victim the policy admits it over, and never steals.
  std::optional<uint64_t> allocate_locked(uint32_t c, uint64_t taker, bool may_steal,
                                          const PolicyKey* admit_key = nullptr,
                                          double admit_p = 1.0);
  // The segment of a class other than `to_class` whose slots are all free or evictable
  // experts of `models` (none taken below its minimum), serving the fewest hits.
  std::optional<uint32_t> movable_segment_locked(uint32_t to_class,
                                                 const std::vector<uint64_t>& models) const;
  // Evicts the segment's experts and gives it to `to_class`.
  void move_segment_locked(uint32_t seg, uint32_t to_class);
  // At a window's end: moves one segment to the class with the most ghost hits when that
  // gain clearly beats the hits of the segment it would cost.
  void rebalance_locked();
  void evict_locked(uint64_t slot);
  // Claims `slot` for an expert and returns the read that fills it.
  SlotRead begin_load_locked(uint64_t slot, const std::shared_ptr<Model>& model,
                                int layer_pos, uint32_t expert, ReadPriority prio);
  void pin_locked(uint64_t session, uint64_t slot);
  void unpin_locked(uint64_t session, uint64_t slot);
  LeaseInfo lease_locked(uint64_t slot, bool hit) const;
  void on_read_done(uint64_t slot, Status status);
  // Cancels the prefetch loading in `slot` (unpinned, nobody waiting): forgets its expert
  // now, so a later acquire reads it again into another slot, and frees the slot when its
  // read completes. Returns false when the slot cannot be dropped (demand, pinned, waited).
  bool cancel_loading_locked(uint64_t slot);
  // Returns a loading slot whose read completed without being served to the pool, and
  // releases its accounting (and its key, unless already dropped).
  void free_unserved_locked(uint64_t slot);
  // Fails an op: drops its pins, returns the callback to run outside the lock.
  std::function<void()> fail_op_locked(const std::shared_ptr<AcquireOp>& op, Status status);

  Pool* pool_;
  std::unique_ptr<SlotWriter> own_writer_;  // the host writer of the IoEngine constructor
  SlotWriter* writer_;
  SlotTable table_;
  mutable std::mutex mu_;
  uint64_t tick_ = 0;         // order of lru_ (which slots are evictable)
  uint64_t access_tick_ = 0;  // the policy's clock: one tick per demanded expert
  std::vector<SlotInfo> slots_;  // by slot table index, grown on demand
  std::unordered_map<ExpertKey, uint64_t, KeyHash> resident_;  // loading or ready
  // The evictable slots (ready, unpinned), per class; the policy picks victims among them.
  LruPolicy lru_;
  std::unique_ptr<ResidencyPolicy> policy_;
  std::vector<bool> capacity_told_;  // per class: policy_->set_capacity was called
  std::unordered_map<uint64_t, std::unordered_map<uint64_t, uint32_t>> session_pins_;
  CacheStats totals_;
  Budget budget_;
  ClassBalancer balancer_;
  std::vector<std::pair<uint64_t, uint64_t>> class_moves_;  // per class: segments in, out
  uint64_t prefetch_cap_ = 0;            // 0: no cap
  uint64_t prefetch_loading_bytes_ = 0;  // slot bytes of prefetch reads not yet done
  uint64_t segment_moves_ = 0;
};

}  // namespace moepool
