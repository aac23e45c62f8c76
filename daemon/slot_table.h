// The daemon's writer side of the shared slot table (common/pool_layout.h). Every store
// here follows the publication order the layout documents: identity and generation
// first, then `state` with release, so a worker that acquire-loads `state` sees the
// identity that goes with it.
// Thread safety: called only under the ExpertCache lock (one writer).
#pragma once

#include <cstdint>

#include "common/pool_layout.h"

namespace moepool {

class SlotTable {
 public:
  explicit SlotTable(ControlHeader* header) : entries_(slot_entries(header)) {}

  // Starts loading a new expert into `slot`: bumps the generation (so leases of the
  // slot's previous content are stale) and publishes state kSlotLoading. Returns the new
  // generation.
  uint64_t begin_load(uint64_t slot, uint64_t model_id, uint32_t layer, uint32_t expert,
                      uint32_t slot_class) {
    SlotEntry& e = entries_[slot];
    uint64_t gen = e.generation.load(std::memory_order_relaxed) + 1;
    e.generation.store(gen, std::memory_order_relaxed);
    e.model_id = model_id;
    e.layer = layer;
    e.expert = expert;
    e.slot_class = slot_class;
    e.state.store(kSlotLoading, std::memory_order_release);  // pairs with readers' acquire
    return gen;
  }
  // Publishes that every byte of the slot arrived without error.
  void mark_ready(uint64_t slot) {
    entries_[slot].state.store(kSlotReady, std::memory_order_release);
  }
  // The slot holds nothing (evicted or its read failed); its bytes must not be served.
  void mark_free(uint64_t slot) {
    entries_[slot].state.store(kSlotFree, std::memory_order_release);
  }
  void set_pins(uint64_t slot, uint32_t pins) {
    entries_[slot].pins.store(pins, std::memory_order_relaxed);  // display only
  }
  uint64_t generation(uint64_t slot) const {
    return entries_[slot].generation.load(std::memory_order_relaxed);
  }
  uint32_t state(uint64_t slot) const {
    return entries_[slot].state.load(std::memory_order_relaxed);
  }

 private:
  SlotEntry* entries_;
};

}  // namespace moepool
