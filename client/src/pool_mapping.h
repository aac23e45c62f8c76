// The pool as a worker sees it: the control segment (slot table) mapped read-only, and
// (host backend) every pool segment mapped read-only at consecutive addresses of one
// reserved range, so pool offset x is base() + x (common/pool_layout.h). A "vulkan" pool's
// segments are exported VRAM that must not be mmapped: they are kept as fds (for the
// worker's own Vulkan or CUDA import) and base() is null.
// Thread safety: immutable after map(); any thread may read it. Unmaps on destruction.
#pragma once

#include <cstdint>
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "common/pool_layout.h"
#include "moepool/status.h"

namespace moepool {

// What AttachReply.layout says about the pool.
struct PoolGeometry {
  uint32_t layout_version = 0;
  uint64_t pool_bytes = 0;
  uint64_t segment_bytes = 0;
  uint32_t segment_count = 0;
  uint64_t control_bytes = 0;
  std::string backend;      // "host" ("" from older daemons) or "vulkan"
  std::string device_uuid;  // "vulkan": 16 bytes
};

class PoolMapping {
 public:
  // Maps fds[0] as the control segment and fds[1..] as the pool segments in order, after
  // checking the geometry and the control header against each other. Does not take the
  // fds: the caller closes them (the mappings stay valid). For a "vulkan" pool only the
  // control segment is mapped and the segment fds are duplicated and kept. An unknown
  // backend is refused.
  static Result<std::unique_ptr<PoolMapping>> map(const PoolGeometry& geometry,
                                                  const std::vector<int>& fds);
  ~PoolMapping();
  PoolMapping(const PoolMapping&) = delete;
  PoolMapping& operator=(const PoolMapping&) = delete;

  // Null for a "vulkan" pool.
  const uint8_t* base() const { return base_; }
  uint64_t pool_bytes() const { return geometry_.pool_bytes; }
  uint64_t segment_bytes() const { return geometry_.segment_bytes; }
  uint32_t segment_count() const { return geometry_.segment_count; }
  // "host" or "vulkan".
  const std::string& backend() const { return geometry_.backend; }
  // deviceUUID of a "vulkan" pool; zeros for a host pool.
  std::array<uint8_t, 16> device_uuid() const;
  // New fds (the caller owns them) for the segments of a "vulkan" pool, in segment order;
  // kFailedPrecondition for a host pool (it is mapped: use base()).
  Result<std::vector<int>> dup_segment_fds() const;
  const ControlHeader* control() const { return control_; }

  // Returns ok iff slot `slot_id` exists, is ready and holds `generation` (the layout's
  // lease validity rule); otherwise an error naming what differs.
  Status check_slot(uint64_t slot_id, uint64_t generation) const;

 private:
  explicit PoolMapping(const PoolGeometry& g) : geometry_(g) {}
  PoolGeometry geometry_;
  const ControlHeader* control_ = nullptr;
  uint8_t* base_ = nullptr;
  std::vector<int> segment_fds_;  // "vulkan" only; owned
};

}  // namespace moepool
