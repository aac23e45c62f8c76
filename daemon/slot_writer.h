// The seam between the expert cache and the pool's memory: how the bytes of an expert's
// read reach its slot. The host backend reads straight into the slot's own memory and is
// done when the read is; the VRAM backend (daemon/vk_slot_writer.h) reads into pinned
// host staging and is done only after a transfer queue copied the bytes into the slot
// and its fence signalled. ExpertCache marks a slot ready (served) only from `done`.
// Thread safety: write() and stats() may be called from any thread; `done` runs on the
// I/O engine's thread or the writer's own thread, never with the caller's locks held.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"
#include "daemon/io_engine.h"

namespace moepool {

// One byte range of a model file and where it goes inside the slot: the region starts
// region_offset bytes into the slot (4096-aligned), the wanted bytes end up at
// region_offset + data_at (see ReadSpan).
struct SlotSpan {
  const ModelFile* file = nullptr;
  uint64_t offset = 0;  // file offset of the wanted bytes
  uint64_t bytes = 0;
  uint64_t region_offset = 0;
  uint64_t data_at = 0;
};

// Everything of one expert's fill: the slot at pool_offset, slot_bytes long (its class
// stride), and its spans.
struct SlotRead {
  uint64_t pool_offset = 0;
  uint64_t slot_bytes = 0;
  std::vector<SlotSpan> spans;
  ReadPriority priority = ReadPriority::kDemand;
  // Set (to true, any thread) by the cache when the slot is no longer wanted: the reads
  // not yet issued are skipped (ReadRequest::cancelled). Null: not cancellable.
  std::shared_ptr<std::atomic<bool>> cancelled;
  // Called exactly once: ok once every wanted byte sits in the slot where workers read it,
  // or the first error (the slot must then not be served).
  std::function<void(Status)> done;
};

// Bytes the VRAM backend copied from staging into slots and the time its transfer queue
// was busy doing so (bytes / seconds = upload rate). Zero for the host backend.
struct UploadStats {
  uint64_t copies = 0;        // slots copied
  uint64_t bytes = 0;         // bytes copied
  uint64_t batches = 0;       // command buffers submitted
  uint64_t busy_ns = 0;       // wall time with at least one copy batch on the queue
  uint64_t staging_waits = 0; // reads that waited for a free staging region
};

class SlotWriter {
 public:
  virtual ~SlotWriter() = default;
  // Fills a slot; see SlotRead. Never blocks on I/O.
  virtual void write(SlotRead read) = 0;
  // "host" or "vulkan".
  virtual std::string backend() const = 0;
  virtual UploadStats stats() const { return {}; }
  // Fails what has not started (kUnavailable), waits for copies in flight. Call after the
  // I/O engine stopped and before the cache goes away. Idempotent.
  virtual void stop() {}
};

// The host backend: the slot is pool memory mapped in this process at base + pool_offset;
// reads land there and `done` is the read's own completion.
class HostSlotWriter final : public SlotWriter {
 public:
  HostSlotWriter(uint8_t* base, IoEngine* io) : base_(base), io_(io) {}
  void write(SlotRead read) override;
  std::string backend() const override { return "host"; }

 private:
  uint8_t* base_;
  IoEngine* io_;
};

// The I/O engine's request for `read` with the slot's regions starting at `slot_region`
// (host slot memory or a staging region) and completion `done`.
ReadRequest to_read_request(const SlotRead& read, uint8_t* slot_region,
                            std::function<void(Status)> done);

}  // namespace moepool
