// The worker side of a GPU pool: imports moepool's pool segments into the worker's own
// Vulkan device as storage buffers the kernels read experts from in place (no copy).
//   - host segments (the client's read-only mapping at pool_base() + i * segment_bytes)
//     through VK_EXT_external_memory_host;
//   - VRAM segments (exported VkDeviceMemory, OPAQUE_FD over the daemon's fd side channel)
//     through VK_KHR_external_memory_fd, only from the same physical device (deviceUUID).
// Lifetimes: an import must be destroyed before the Device it was made on, after every
// command that reads it completed, and (host imports) before the memory it points at is
// unmapped, i.e. before the moepool::Client whose mapping it imports.
// Thread safety: the free functions may be called from any thread; an ImportedSegment or
// ImportedPool is used by one thread at a time (its accessors are immutable after creation).
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "kernels/moe_gpu.h"
#include "kernels/vk_device.h"
#include "moepool/status.h"

namespace moepool {
struct Lease;
}

namespace moepool::vk {

// Usage of the VkBuffer over an imported host segment: a storage buffer the kernels bind,
// and a transfer source (tests and tools copy bytes out of it).
inline constexpr VkBufferUsageFlags kImportedBufferUsage =
    VK_BUFFER_USAGE_STORAGE_BUFFER_BIT | VK_BUFFER_USAGE_TRANSFER_SRC_BIT;
// Usage of the VkBuffer of a VRAM segment, on the daemon's exporting side and on every
// importing side alike (the export is a dedicated allocation, so the buffers must match;
// create_vram_segment_buffer() is the one place both create it).
inline constexpr VkBufferUsageFlags kVramSegmentUsage = VK_BUFFER_USAGE_STORAGE_BUFFER_BIT |
                                                        VK_BUFFER_USAGE_TRANSFER_SRC_BIT |
                                                        VK_BUFFER_USAGE_TRANSFER_DST_BIT;

// One imported segment: a VkBuffer over the whole segment bound to imported memory.
// Move-only; destroys the buffer, then frees the memory (for an fd import that closes the
// driver's fd; for a host import the host memory itself is untouched).
class ImportedSegment {
 public:
  ImportedSegment() = default;
  ImportedSegment(ImportedSegment&& o) noexcept { *this = std::move(o); }
  ImportedSegment& operator=(ImportedSegment&& o) noexcept;
  ImportedSegment(const ImportedSegment&) = delete;
  ImportedSegment& operator=(const ImportedSegment&) = delete;
  ~ImportedSegment() { reset(); }

  VkBuffer buffer() const { return buffer_; }
  VkDeviceMemory memory() const { return memory_; }
  uint64_t bytes() const { return bytes_; }
  uint32_t memory_type() const { return memory_type_; }

 private:
  friend Result<ImportedSegment> import_host_segment(const Device&, const void*, uint64_t,
                                                     uint32_t);
  friend Result<ImportedSegment> import_fd_segment(const Device&, int, uint64_t, const DeviceUuid&,
                                                   uint32_t);
  void reset();

  VkDevice device_ = VK_NULL_HANDLE;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  uint64_t bytes_ = 0;
  uint32_t memory_type_ = 0;
};

// Imports `bytes` of host memory at `data` (segment `index`, named in errors) through
// VK_EXT_external_memory_host. `data` and `bytes` must be non-zero multiples of the
// device's minImportedHostPointerAlignment: checked here (lavapipe does not), refused with
// kInvalidArgument naming the segment, the address, the size and the alignment. The memory
// may be mapped read-only (the kernels only read it). kFailedPrecondition without the
// extension, and when the driver refuses the memory but imports a writable mapping: NVIDIA
// 580 imports only writable host mappings (measured on an H100: every PROT_READ mapping,
// memfd or anonymous, fails with VK_ERROR_OUT_OF_DEVICE_MEMORY), so on NVIDIA a worker
// cannot import the read-only host pool and needs a VRAM pool. The memory must stay
// mapped until the returned segment is destroyed.
Result<ImportedSegment> import_host_segment(const Device& device, const void* data, uint64_t bytes,
                                            uint32_t index);

// Imports one VRAM segment, an OPAQUE_FD export of `bytes` of device memory made by the
// daemon on the physical device `exporter` (the deviceUUID the daemon reported), through
// VK_KHR_external_memory_fd. Refuses a segment of another physical device with
// kFailedPrecondition naming both UUIDs, before touching the fd's memory.
// Ownership of `fd`: always consumed. On success the Vulkan driver owns it (and closes it
// when the segment's memory is freed); on every failure this function closes it. The
// caller passes its own descriptor (e.g. a dup of the one the client received) and never
// uses or closes it afterwards.
// The import mirrors the daemon's export (daemon/vk_pool_memory.cpp): a buffer of `bytes`
// with kVramSegmentUsage and VkExternalMemoryBufferCreateInfo(OPAQUE_FD), memory of that
// buffer's required size in the first DEVICE_LOCAL type it allows (opaque_fd_memory_type),
// allocated dedicated to the buffer (VkMemoryDedicatedAllocateInfo).
Result<ImportedSegment> import_fd_segment(const Device& device, int fd, uint64_t bytes,
                                          const DeviceUuid& exporter, uint32_t index);

// Creates the VkBuffer a VRAM segment of `bytes` is bound to, exactly as an OPAQUE_FD export
// of a dedicated allocation and its imports must agree on it: usage kVramSegmentUsage,
// external handle type OPAQUE_FD, exclusive sharing. The daemon's VRAM pool
// (daemon/vk_pool_memory.cpp) creates its segments with it and import_fd_segment() its
// imports, so the two cannot drift apart. The caller destroys the buffer.
Result<VkBuffer> create_vram_segment_buffer(const Device& device, uint64_t bytes);

// The memory type a VRAM segment of `bytes` (an OPAQUE_FD-exportable buffer with
// kVramSegmentUsage) lives in on `device`: the first DEVICE_LOCAL type its memory
// requirements allow. Exporter and importer both use this rule (an OPAQUE_FD import must
// name the exporter's memory type and size).
Result<uint32_t> opaque_fd_memory_type(const Device& device, uint64_t bytes);

// Parses "6d657361-3232-..." or 32 hex digits (any case) into a UUID; kInvalidArgument
// naming the text otherwise. The daemon may report either form.
Result<DeviceUuid> parse_uuid(std::string_view text);

// Locates a lease's projections in a pool of `segment_bytes` segments, as the table MoeGpu
// reads: slot k of stride s starts at pool offset k * s, i.e. in segment
// (k * s) / segment_bytes at offset (k * s) % segment_bytes; each projection adds its
// offset_in_slot (all of a slot's projections get the segment its first byte lies in, so
// the offset may pass segment_bytes in a host pool, where a slot may straddle into the
// next segment: ImportedPool's windows cover that). Works for leases of VRAM pools, whose
// data pointers are null. A fused gate_up projection gives gate its first half (the first
// n_ff rows) and up its second. kInvalidArgument naming the expert when the lease lacks
// down or gate+up (or gate_up), its slot lies past `segment_count` segments (0: not
// checked), or a projection ends past buffer_bytes[segment] (the bytes imported as that
// segment's buffer; empty: not checked).
Result<kernels::ExpertLocation> lease_location(const Lease& lease, uint64_t segment_bytes,
                                               uint32_t segment_count = 0,
                                               std::span<const uint64_t> buffer_bytes = {});

// Every segment of one worker pool imported into one Device, in pool order: buffer i
// starts at segment i, so a lease's (segment, offset) from lease_location() indexes it.
// Host pools may hold a slot across two neighbouring segments (their mapping is
// contiguous), so buffer i of a host pool is a window over segments i .. i+window-1 (the
// same host pages imported again by the next window; nothing is copied). VRAM pools never
// straddle (the daemon keeps each slot inside one exported segment): buffer i is segment i.
// Destroying it destroys every buffer and frees every import (see ImportedSegment), and
// must happen before the Device and (host pools) the Client are destroyed.
class ImportedPool {
 public:
  // Imports a host pool mapped at `base` (segment_count segments of segment_bytes, at
  // consecutive addresses): buffer i covers [base + i * segment_bytes, + min(window,
  // segment_count - i) * segment_bytes). `window` >= 1 segments; the default 2 reaches
  // every slot whose stride is at most one segment. Fails as import_host_segment does,
  // naming the first bad segment.
  static Result<std::unique_ptr<ImportedPool>> import_host(const Device& device,
                                                           const uint8_t* base,
                                                           uint64_t segment_bytes,
                                                           uint32_t segment_count,
                                                           uint32_t window = 2);
  // Imports a VRAM pool from one fd per segment (in pool order; every fd is consumed as
  // import_fd_segment says, including those after a failing one). Refuses the whole pool
  // if `exporter` is not this device's UUID.
  static Result<std::unique_ptr<ImportedPool>> import_fds(const Device& device,
                                                          std::vector<int> fds,
                                                          uint64_t segment_bytes,
                                                          const DeviceUuid& exporter);

  // Buffers (one per pool segment) and the pool's segment size.
  uint32_t segment_count() const { return static_cast<uint32_t>(segments_.size()); }
  uint64_t segment_bytes() const { return segment_bytes_; }
  const ImportedSegment& segment(uint32_t i) const { return segments_[i]; }
  // One VkBuffer per segment and its size (a host pool's window), in pool order: what
  // MoeGpu binds when segment_count() <= max_segments().
  std::span<const VkBuffer> buffers() const { return buffers_; }
  std::span<const uint64_t> bytes() const { return bytes_; }
  // lease_location() in this pool, checked to lie inside buffer `segment`.
  Result<kernels::ExpertLocation> locate(const Lease& lease) const;

  // The buffers a set of expert locations reads, renumbered densely: for a pool with more
  // segments than MoeGpu::max_segments() binds at once. Rewrites every location's segment
  // indexes to index `buffers` (ascending pool order) and returns what to bind.
  struct Subset {
    std::vector<VkBuffer> buffers;
    std::vector<uint64_t> bytes;
  };
  Subset subset(std::span<kernels::ExpertLocation> locations) const;

 private:
  ImportedPool() = default;
  void add(ImportedSegment s);

  uint64_t segment_bytes_ = 0;
  std::vector<ImportedSegment> segments_;
  std::vector<VkBuffer> buffers_;
  std::vector<uint64_t> bytes_;
};

}  // namespace moepool::vk
