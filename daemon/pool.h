// The pool's memory: a control segment (header + slot table) and segment_count equal
// data segments, carved into slot size classes. Host backend: the segments are memfds
// mapped at consecutive addresses from base(). VRAM backend (create_external): they are
// exported device memory this process does not map (base() is null; bytes reach a slot
// only through the VRAM SlotWriter); the control segment is a memfd in both.
//
// Slot k of class c sits at pool offset k * stride(c). It is usable only while every
// segment it touches belongs to class c (in an external pool, whose segments are separate
// device allocations, only when it lies inside one segment); segments move between classes whole, and only
// when every slot touching them is empty. The pool never holds more than pool_bytes.
// Thread safety: not thread-safe; the ExpertCache calls it under its lock. The
// accessors of immutable facts (base, fds, sizes) may be called from any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/pool_layout.h"
#include "common/status.h"
#include "daemon/shm_segment.h"

namespace moepool {

class Pool {
 public:
  struct Options {
    uint64_t pool_bytes = 256ull << 20;
    uint64_t segment_bytes = 0;    // 0: min(pool_bytes, 64 MiB)
    std::string lock = "auto";     // "auto" | "on" | "off"
  };
  static constexpr uint32_t kNoClass = ~0u;

  // Creates, pre-faults and (per options.lock) mlock()s every segment.
  static Result<std::unique_ptr<Pool>> create(const Options& options);
  // A pool whose segments are memory objects made elsewhere (the VRAM backend's exported
  // VkDeviceMemory): `segment_fds` (borrowed; they must outlive the pool) of
  // options.segment_bytes each, in pool order. Only the control segment is created (and
  // locked per options.lock) here. `backend` and `device_uuid` are what workers are told.
  static Result<std::unique_ptr<Pool>> create_external(const Options& options,
                                                       std::vector<int> segment_fds,
                                                       std::string backend,
                                                       std::string device_uuid);
  ~Pool();

  // Host backend: where pool offset 0 is mapped in this process. Null for external pools.
  uint8_t* base() const { return base_; }
  uint64_t pool_bytes() const { return segment_bytes_ * segment_count_; }
  uint64_t segment_bytes() const { return segment_bytes_; }
  uint32_t segment_count() const { return segment_count_; }
  // "host" or "vulkan"; the device UUID (16 bytes) of a VRAM pool, else "".
  const std::string& backend() const { return backend_; }
  const std::string& device_uuid() const { return device_uuid_; }
  ControlHeader* control() const { return header_; }
  int control_fd() const { return control_->fd(); }
  uint64_t control_bytes() const { return control_->bytes(); }
  std::vector<int> segment_fds() const;
  bool locked() const { return locked_; }
  // One line for the log: how the pool was set up (prefault time, lock result).
  const std::string& setup_note() const { return setup_note_; }

  // Returns the class whose slots are `stride` bytes (a multiple of kSlotAlign),
  // creating it on first use. Errors: stride larger than a segment, class or slot table
  // full.
  Result<uint32_t> class_for(uint64_t stride);
  uint64_t stride(uint32_t c) const { return classes_[c].stride; }
  uint32_t class_count() const { return static_cast<uint32_t>(classes_.size()); }
  // Most slots class c could hold at once, if it owned the whole pool.
  uint64_t capacity_slots(uint32_t c) const;

  // Takes a free usable slot of class c, growing the class by a free segment if needed.
  std::optional<uint64_t> take_free_slot(uint32_t c);
  // Puts an emptied slot back on its class's free list.
  void return_slot(uint64_t slot);
  // Slot table index -> class, index within class, pool offset.
  uint32_t slot_class(uint64_t slot) const;
  uint64_t slot_index(uint64_t slot) const { return slot - classes_[slot_class(slot)].first_slot; }
  uint64_t slot_offset(uint64_t slot) const { return slot_index(slot) * stride(slot_class(slot)); }
  // The slot's bytes in this process; null for an external (VRAM) pool.
  uint8_t* slot_data(uint64_t slot) const {
    return base_ ? base_ + slot_offset(slot) : nullptr;
  }

  uint32_t segment_owner(uint32_t seg) const { return owner_[seg]; }
  // Gives free segment `seg` to class c (its whole slots become free slots of c). False
  // when the segment is not free.
  bool assign_segment(uint32_t seg, uint32_t c);
  // Usable slots (free or not) that touch segment `seg`, as slot table indexes.
  std::vector<uint64_t> slots_touching(uint32_t seg) const;
  // Returns a segment to the free set. Precondition: every usable slot touching it is
  // on the free list (the caller evicted them).
  void release_segment(uint32_t seg);
  uint64_t free_segments() const;

 private:
  struct ClassState {
    uint64_t stride = 0;
    uint64_t first_slot = 0;
    uint64_t n_slots = 0;
    std::vector<bool> usable;   // per k
    std::set<uint64_t> free;    // k of usable, empty slots; lowest first
  };
  Pool() = default;
  // Creates the control segment for `count` segments of `seg` bytes.
  Status init_control(uint64_t seg, uint64_t count);
  bool grow(uint32_t c);
  bool slot_fits_owner(uint32_t c, uint64_t k) const;
  // Range of k of class c whose slots touch segment seg.
  void k_range(uint32_t c, uint32_t seg, uint64_t* lo, uint64_t* hi) const;

  uint8_t* base_ = nullptr;
  uint64_t reserved_bytes_ = 0;
  uint64_t segment_bytes_ = 0;
  std::unique_ptr<ShmSegment> control_;
  ControlHeader* header_ = nullptr;
  std::vector<std::unique_ptr<ShmSegment>> segments_;  // host backend only
  std::vector<int> external_fds_;                      // external pools: borrowed
  uint32_t segment_count_ = 0;
  bool contiguous_ = true;  // host: one mapping, so a slot may span adjacent segments
  std::string backend_ = "host";
  std::string device_uuid_;
  std::vector<uint32_t> owner_;  // per segment: class or kNoClass
  std::vector<ClassState> classes_;
  uint64_t next_slot_ = 0;       // first unassigned slot table entry
  bool locked_ = false;
  std::string setup_note_;
};

}  // namespace moepool
