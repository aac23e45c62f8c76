// The measured read-bandwidth ceiling: one dispatch of a trivial streaming-read kernel
// (kernels/shaders/stream_read.comp) over byte ranges of the same segment buffers a MoeGpu
// binds, timed with GPU timestamps, so a weight-reading kernel's GB/s can be reported as a
// fraction of what plain 16-byte loads get on the same bytes in the same buffers. Each range
// is cut into chunks of `chunk_bytes`, one workgroup per chunk; every byte is read once.
// Thread safety: one GpuReadCeiling per thread at a time (it owns a command pool).
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>
#include <span>

#include "kernels/vk_device.h"
#include "moepool/status.h"

namespace moepool::kernels {

// Bytes [offset, offset + bytes) of the buffer bound as `segment`; offset and bytes are
// multiples of 16, bytes > 0.
struct ReadRange {
  uint32_t segment = 0;
  uint64_t offset = 0;
  uint64_t bytes = 0;
};

// Launch shape, as specialization constants (no recompile).
struct ReadCeilingOptions {
  uint32_t workgroup = 256;          // threads per workgroup
  uint32_t chunk_bytes = 64 * 1024;  // bytes per workgroup, a multiple of 16
  uint32_t unroll = 4;               // 16-byte loads in flight per thread, 1..16
};

struct ReadCeilingRun {
  double seconds = 0;       // GPU time of the dispatch, from timestamp queries
  uint64_t bytes = 0;       // bytes read: the sum of the ranges' bytes
  uint32_t workgroups = 0;  // chunks
  uint32_t xor_value = 0;   // XOR of every little-endian 32-bit word read
  double bytes_per_s() const { return seconds > 0 ? bytes / seconds : 0; }
};

class GpuReadCeiling {
 public:
  // InvalidArgument naming the option when the launch shape is not one the device takes;
  // FailedPrecondition when the compute queue has no timestamps; kUnavailable without
  // subgroup arithmetic in compute shaders.
  static Result<std::unique_ptr<GpuReadCeiling>> create(const vk::Device& device,
                                                        const ReadCeilingOptions& options = {});
  ~GpuReadCeiling();
  GpuReadCeiling(const GpuReadCeiling&) = delete;
  GpuReadCeiling& operator=(const GpuReadCeiling&) = delete;

  // The most segments one bind_segments() call may bind (from the descriptor limits).
  uint32_t max_segments() const;

  // Binds the buffers ranges read from, as MoeGpu::bind_segments does: ReadRange::segment
  // indexes `buffers`, each created with VK_BUFFER_USAGE_STORAGE_BUFFER_BIT and holding
  // bytes[i] (1..maxStorageBufferRange) bytes; the caller keeps them alive while bound.
  Status bind_segments(std::span<const VkBuffer> buffers, std::span<const uint64_t> bytes);

  // Reads every range once in one dispatch and returns its GPU time and the XOR of what it
  // read. InvalidArgument naming the range and field when a range is empty, not 16-byte
  // aligned, names an unbound segment or reaches past its segment's bytes.
  Result<ReadCeilingRun> run(std::span<const ReadRange> ranges);

 private:
  struct Impl;
  explicit GpuReadCeiling(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace moepool::kernels
