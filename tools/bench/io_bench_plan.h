// The reads of one `moepool-bench io` run: which file ranges, in which order, and how
// much destination memory one of them needs.
// Thread safety: an IoReadPlan is immutable after make_*; any thread may read it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <string>
#include <vector>

#include "common/status.h"

namespace moepool::bench {

struct IoRange {
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

class IoReadPlan {
 public:
  // seq: consecutive `block`-sized reads from offset `start`, wrapping to offset 0 at the
  // end of the file (the last block before the end is shorter when the size is not a
  // multiple), until `total` bytes. Fails on an empty file, zero block/total or a start
  // at or past the end.
  static Result<IoReadPlan> sequential(uint64_t file_size, uint64_t block, uint64_t total,
                                       uint64_t start = 0);
  // rand: reads of `block` bytes at block-aligned offsets drawn from [0, file_size / block)
  // by a seeded hash, until `total` bytes (the last read shorter if total is not a
  // multiple). Fails when the file is smaller than one block.
  static Result<IoReadPlan> random(uint64_t file_size, uint64_t block, uint64_t total,
                                   uint64_t seed);
  // extents: the ranges of `path`, one per line "offset length" (decimal or 0x hex;
  // blank lines and '#' comments skipped), in file order. Errors name the file and line
  // (malformed, zero length, or past the end of a file of `file_size` bytes).
  static Result<IoReadPlan> extents(const std::string& path, uint64_t file_size);

  uint64_t count() const { return count_; }
  IoRange at(uint64_t i) const;  // i < count()
  uint64_t total_bytes() const { return total_; }
  // Destination bytes one read needs in every engine mode (region_capacity_for).
  uint64_t max_region_bytes() const { return max_region_; }
  std::string describe() const { return desc_; }

 private:
  enum class Kind { kSeq, kRand, kList };
  Kind kind_ = Kind::kSeq;
  uint64_t file_size_ = 0, block_ = 0, total_ = 0, count_ = 0, seed_ = 0, max_region_ = 0;
  uint64_t start_ = 0;  // seq: first offset
  std::vector<IoRange> list_;
  std::string desc_;
};

// Writes one "offset length" line per gate/up/down extent of `top_k` distinct experts
// drawn (seeded) from each of the model's first `layers` MoE layers (0: all), layer by
// layer, preceded by '#' comment lines naming the model, the file and the draw. Fails on
// a model split over several files or top_k above a layer's expert count.
Status print_expert_extents(const std::string& model, uint32_t layers, uint32_t top_k,
                            uint64_t seed, FILE* out);

}  // namespace moepool::bench
