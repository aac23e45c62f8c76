// Layout of the shared control segment: a header, the slot size classes and the slot
// table. moepoold maps it read-write; workers map it read-only. Position-independent:
// offsets, never pointers. Bump kLayoutVersion on any change.
//
// Addressing: the pool is segment_count segments of segment_bytes each, mapped by
// everyone at consecutive addresses from one base. Slot k of class c sits at pool offset
// k * classes[c].stride; it exists only while every segment it touches belongs to class
// c (the daemon decides; a worker learns it from a lease). Slot table entries of class c
// are [classes[c].first_slot, first_slot + n_slots).
//
// Writers: only moepoold writes. Readers (workers) check a lease by reading `state`
// (acquire) and then `generation`: a lease is valid iff state == kReady and generation
// equals the lease's. The daemon bumps generation before it reuses a slot (see
// SlotEntry), so a stale lease is always detected.
#pragma once

#include <atomic>
#include <cstdint>

namespace moepool {

inline constexpr uint64_t kControlMagic = 0x314C4F4F50454F4DULL;  // "MOEPOOL1"
inline constexpr uint32_t kLayoutVersion = 1;
inline constexpr uint32_t kMaxClasses = 32;
inline constexpr uint32_t kMaxProjections = 3;
inline constexpr uint64_t kSlotAlign = 4096;  // O_DIRECT and kernel alignment

enum SlotState : uint32_t {
  kSlotFree = 0,     // holds nothing
  kSlotLoading = 1,  // a read into it is in flight; never served
  kSlotReady = 2,    // all bytes arrived without error
};

struct alignas(64) SlotEntry {
  // Slot state. The daemon stores it with release after writing generation and the
  // identity fields below; readers load it with acquire before reading them.
  std::atomic<uint32_t> state;
  // Leases held on this slot (all sessions). Written by the daemon under its pool lock;
  // readers use it only for display. Pairs with nothing.
  std::atomic<uint32_t> pins;
  // Incremented by the daemon each time the slot starts to hold a new expert (before
  // state leaves kSlotFree, release). Pairs with the acquire load of `state`.
  std::atomic<uint64_t> generation;
  uint64_t model_id;  // identity of the expert held; valid while state != kSlotFree
  uint32_t layer;
  uint32_t expert;
  uint32_t slot_class;
  uint32_t reserved0;
  uint64_t reserved1[3];
};
static_assert(sizeof(SlotEntry) == 64);

struct SlotClass {
  // 1 once the daemon has filled in this class (release, after all fields below);
  // readers load it with acquire. Classes are never removed while the daemon runs.
  std::atomic<uint32_t> active;
  uint32_t reserved;
  uint64_t stride;      // bytes from slot k to slot k+1; multiple of kSlotAlign
  uint64_t first_slot;  // first slot table entry of this class
  uint64_t n_slots;     // entries owned by this class
};

struct ControlHeader {
  uint64_t magic;          // kControlMagic
  uint32_t version;        // kLayoutVersion
  uint32_t header_bytes;   // sizeof(ControlHeader)
  uint64_t pool_bytes;
  uint64_t segment_bytes;
  uint32_t segment_count;
  uint32_t max_classes;    // kMaxClasses
  uint64_t slot_capacity;  // entries in the slot table
  uint64_t slots_offset;   // byte offset of SlotEntry[0] from the control base
  SlotClass classes[kMaxClasses];
};

// Bytes of a control segment with `slot_capacity` entries (page-rounded).
inline uint64_t control_bytes_for(uint64_t slot_capacity) {
  uint64_t off = (sizeof(ControlHeader) + 63) / 64 * 64;
  uint64_t end = off + slot_capacity * sizeof(SlotEntry);
  return (end + kSlotAlign - 1) / kSlotAlign * kSlotAlign;
}

inline SlotEntry* slot_entries(ControlHeader* h) {
  return reinterpret_cast<SlotEntry*>(reinterpret_cast<char*>(h) + h->slots_offset);
}
inline const SlotEntry* slot_entries(const ControlHeader* h) {
  return reinterpret_cast<const SlotEntry*>(reinterpret_cast<const char*>(h) + h->slots_offset);
}

}  // namespace moepool
