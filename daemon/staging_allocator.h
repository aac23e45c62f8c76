// Carves the VRAM backend's pinned staging buffer into 4 KiB-aligned regions, one per
// expert read in flight: first fit over the free ranges, coalescing on free. A full
// allocator is how the number of reads in flight is bounded.
// Thread safety: none; its owner (VkSlotWriter) calls it under its lock.
#pragma once

#include <cstdint>
#include <iterator>
#include <map>
#include <optional>

namespace moepool {

class StagingAllocator {
 public:
  static constexpr uint64_t kAlign = 4096;
  // Manages [0, bytes) (rounded down to 4096).
  explicit StagingAllocator(uint64_t bytes) : capacity_(bytes / kAlign * kAlign) {
    if (capacity_) free_[0] = capacity_;
  }
  uint64_t capacity() const { return capacity_; }
  uint64_t free_bytes() const { return free_bytes_sum(); }
  // Bytes a region of `bytes` takes (rounded up to 4096).
  static uint64_t rounded(uint64_t bytes) { return (bytes + kAlign - 1) / kAlign * kAlign; }

  // Offset of a free region of at least `bytes` (the lowest that fits), or nullopt.
  std::optional<uint64_t> allocate(uint64_t bytes) {
    const uint64_t want = rounded(bytes);
    if (want == 0) return std::nullopt;
    for (auto it = free_.begin(); it != free_.end(); ++it) {
      if (it->second < want) continue;
      const uint64_t at = it->first, len = it->second;
      free_.erase(it);
      if (len > want) free_[at + want] = len - want;
      return at;
    }
    return std::nullopt;
  }
  // Returns a region allocate() gave out (same `bytes`).
  void release(uint64_t offset, uint64_t bytes) {
    uint64_t len = rounded(bytes);
    auto next = free_.lower_bound(offset);
    if (next != free_.end() && offset + len == next->first) {  // merge with the following
      len += next->second;
      next = free_.erase(next);
    }
    if (next != free_.begin()) {  // merge with the preceding
      auto prev = std::prev(next);
      if (prev->first + prev->second == offset) {
        prev->second += len;
        return;
      }
    }
    free_[offset] = len;
  }

 private:
  uint64_t free_bytes_sum() const {
    uint64_t n = 0;
    for (const auto& [at, len] : free_) n += len;
    return n;
  }
  uint64_t capacity_;
  std::map<uint64_t, uint64_t> free_;  // offset -> length, disjoint, never adjacent
};

}  // namespace moepool
