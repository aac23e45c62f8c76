// The VRAM backend's memory (pool.backend = "vulkan"): the pool segments as exportable
// device-local VkDeviceMemory, one dedicated allocation of a VkBuffer covering each
// segment, exported once as an OPAQUE_FD that the fd side channel hands to workers in place
// of the host backend's memfds. Workers import a segment with a VkBuffer of
// segment_bytes created with VkExternalMemoryBufferCreateInfo(OPAQUE_FD), usage
// vk::kVramSegmentUsage (kernels/vk_memory_import.h), bound to memory allocated with VkImportMemoryFdInfoKHR and
// VkMemoryDedicatedAllocateInfo (the export is a dedicated allocation), after checking
// that their device's deviceUUID equals device_uuid(). The daemon never maps these
// segments. Exports cannot be revoked, so the memory is freed only when this object is
// destroyed at daemon exit: a VRAM pool never shrinks while the daemon runs.
// Thread safety: immutable after create(); any thread may read it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "common/status.h"

#ifdef MOEPOOL_DAEMON_HAVE_VULKAN
#include "kernels/vk_device.h"

namespace moepool {

class VkPoolMemory {
 public:
  // Opens Vulkan device `device_index` (-1: pick one, see kernels/vk_device.h) with
  // VK_KHR_external_memory_fd and allocates `segment_count` exported segments of
  // `segment_bytes`. Fails (naming the limit) when segment_bytes exceeds the device's
  // maxMemoryAllocationSize or maxStorageBufferRange, or when device-local memory runs out.
  static Result<std::unique_ptr<VkPoolMemory>> create(int device_index, uint64_t segment_bytes,
                                                      uint32_t segment_count);
  ~VkPoolMemory();
  VkPoolMemory(const VkPoolMemory&) = delete;
  VkPoolMemory& operator=(const VkPoolMemory&) = delete;

  const vk::Device& device() const { return *device_; }
  uint64_t segment_bytes() const { return segment_bytes_; }
  uint32_t segment_count() const { return static_cast<uint32_t>(segments_.size()); }
  // The buffer covering segment `i` (transfer destination of slot copies).
  VkBuffer buffer(uint32_t i) const { return segments_[i].buffer; }
  // The exported fds, in segment order (owned here; the side channel sends copies).
  std::vector<int> fds() const;
  // deviceUUID as 16 raw bytes.
  std::string device_uuid() const;
  // One line for the log: device, driver, segments, memory type.
  const std::string& note() const { return note_; }

 private:
  struct Segment {
    VkBuffer buffer = VK_NULL_HANDLE;
    VkDeviceMemory memory = VK_NULL_HANDLE;
    int fd = -1;
  };
  VkPoolMemory() = default;

  std::unique_ptr<vk::Device> device_;
  uint64_t segment_bytes_ = 0;
  std::vector<Segment> segments_;
  std::string note_;
};

}  // namespace moepool
#endif  // MOEPOOL_DAEMON_HAVE_VULKAN
