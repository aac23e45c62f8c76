// A model the daemon has opened: its catalog, its open files, and where each MoE
// layer's experts go in a slot. Shared (shared_ptr) by the registry, the cache and
// in-flight reads.
// Thread safety: everything but the counters is immutable once the registry published
// it; the counters are guarded by the ExpertCache lock.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/catalog.h"
#include "daemon/model_file.h"

namespace moepool {

// Where the projections of one layer's experts sit inside a slot of that layer's class.
// Every expert of the layer has each projection at the same offset in its slot (an engine
// points one tensor view per projection at base + offset with the class stride).
struct LayerSlotLayout {
  uint32_t slot_class = 0;
  uint64_t stride = 0;                  // slot bytes; multiple of 4096
  std::vector<uint64_t> region_offset;  // per projection: 4096-aligned start of its region
  // Per projection: where every expert's bytes sit in the slot, region_offset + expert 0's
  // file offset % 4096 (so where expert sizes are multiples of 4096 no read moves bytes).
  std::vector<uint64_t> proj_offset;
};

struct ModelCounters {
  uint64_t hits = 0, misses = 0, bytes_read = 0, read_errors = 0, evictions = 0;
  uint64_t prefetches = 0, resident = 0, pinned = 0;
  uint64_t used_bytes = 0, pinned_bytes = 0;  // slot bytes held / pinned by this model
  uint64_t predicted_prefetches = 0;          // prefetches started by the daemon's predictor
  // Warm-up (ExpertCache::warm): state "none" | "running" | "done" | "failed: <why>".
  std::string warmup_state = "none";
  uint64_t warmup_planned = 0, warmup_loaded = 0, warmup_failed = 0, warmup_bytes_read = 0;
};

// What a model file was when the daemon opened it; a different stamp at the same path
// means the file was changed or replaced since.
struct FileStamp {
  uint64_t dev = 0, ino = 0, size = 0;
  int64_t mtime_ns = 0;
  bool operator==(const FileStamp&) const = default;
};

struct Model {
  Catalog catalog;
  uint64_t id_ = 0;                     // catalog.model_id(), or a variant of it (see ModelRegistry)
  std::vector<FileStamp> stamps;        // parallel to catalog.files()
  std::string path;                     // as the first opener gave it, resolved
  std::vector<ModelFile> files;         // parallel to catalog.files()
  std::vector<LayerSlotLayout> layouts; // parallel to catalog.layers()
  ModelCounters counters;

  Model() = default;
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;
  ~Model() {
    for (auto& f : files) close_model_file(&f);
  }
  uint64_t id() const { return id_; }
  // Index into catalog.layers() of MoE layer `layer`, or -1.
  int layer_pos(uint32_t layer) const {
    const MoeLayer* l = catalog.layer(layer);
    return l ? static_cast<int>(l - catalog.layers().data()) : -1;
  }
};

}  // namespace moepool
