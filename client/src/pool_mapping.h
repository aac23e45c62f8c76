// The pool as a worker sees it: the control segment (slot table) mapped read-only, and
// every pool segment mapped read-only at consecutive addresses of one reserved range, so
// pool offset x is base() + x (common/pool_layout.h).
// Thread safety: immutable after map(); any thread may read it. Unmaps on destruction.
#pragma once

#include <cstdint>
#include <memory>
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
};

class PoolMapping {
 public:
  // Maps fds[0] as the control segment and fds[1..] as the pool segments in order, after
  // checking the geometry and the control header against each other. Does not take the
  // fds: the caller closes them (the mappings stay valid).
  static Result<std::unique_ptr<PoolMapping>> map(const PoolGeometry& geometry,
                                                  const std::vector<int>& fds);
  ~PoolMapping();
  PoolMapping(const PoolMapping&) = delete;
  PoolMapping& operator=(const PoolMapping&) = delete;

  const uint8_t* base() const { return base_; }
  uint64_t pool_bytes() const { return geometry_.pool_bytes; }
  const ControlHeader* control() const { return control_; }

  // Returns ok iff slot `slot_id` exists, is ready and holds `generation` (the layout's
  // lease validity rule); otherwise an error naming what differs.
  Status check_slot(uint64_t slot_id, uint64_t generation) const;

 private:
  explicit PoolMapping(const PoolGeometry& g) : geometry_(g) {}
  PoolGeometry geometry_;
  const ControlHeader* control_ = nullptr;
  uint8_t* base_ = nullptr;
};

}  // namespace moepool
