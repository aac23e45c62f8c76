#include "daemon/vk_pool_memory.h"

#ifdef MOEPOOL_DAEMON_HAVE_VULKAN
#include <unistd.h>

#include "kernels/vk_memory_import.h"

namespace moepool {
namespace {

std::string mib(uint64_t b) { return std::to_string(b >> 20) + " MiB"; }

}  // namespace

Result<std::unique_ptr<VkPoolMemory>> VkPoolMemory::create(int device_index,
                                                            uint64_t segment_bytes,
                                                            uint32_t segment_count) {
  vk::DeviceOptions opts;
  opts.index = device_index;
  opts.require_external_memory_fd = true;
  auto dev = vk::Device::open(opts);
  if (!dev.ok())
    return Status(dev.status().code(), "pool.backend = \"vulkan\": " + dev.status().message());
  std::unique_ptr<VkPoolMemory> pm(new VkPoolMemory());
  pm->device_ = std::move(dev).value();
  pm->segment_bytes_ = segment_bytes;
  const vk::Device& d = *pm->device_;
  if (d.get_memory_fd == nullptr)
    return Unavailable("pool.backend = \"vulkan\": " + d.name() + " has no vkGetMemoryFdKHR");
  const uint64_t max_alloc = d.max_allocation_bytes();
  const uint64_t max_range = d.limits().maxStorageBufferRange;
  if (max_alloc != 0 && segment_bytes > max_alloc)
    return InvalidArgument("pool.segment_size " + std::to_string(segment_bytes) + " bytes exceeds " +
                           d.name() + "'s maxMemoryAllocationSize (" + std::to_string(max_alloc) +
                           " bytes); set pool.segment_size to at most that");
  if (segment_bytes > max_range)
    return InvalidArgument("pool.segment_size " + std::to_string(segment_bytes) + " bytes exceeds " +
                           d.name() + "'s maxStorageBufferRange (" + std::to_string(max_range) +
                           " bytes), so kernels could not bind a whole segment; set "
                           "pool.segment_size to at most that");

  VkDevice vd = d.device();
  uint32_t type_index = ~0u;
  for (uint32_t i = 0; i < segment_count; ++i) {
    const std::string what = "VRAM segment " + std::to_string(i);
    Segment seg;
    // The buffer workers' imports create too (kernels/vk_memory_import.h): an OPAQUE_FD
    // import of a dedicated allocation must match the export exactly.
    auto buffer = vk::create_vram_segment_buffer(d, segment_bytes);
    if (!buffer.ok()) return Status(buffer.status().code(), what + ": " + buffer.status().message());
    seg.buffer = *buffer;
    pm->segments_.push_back(seg);  // destroyed by ~VkPoolMemory on any failure below
    Segment& s = pm->segments_.back();

    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(vd, s.buffer, &req);
    if (type_index == ~0u) {
      auto t = d.find_memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
      if (!t.ok())
        return Unavailable(what + ": " + d.name() + " has no device-local memory type for "
                           "an exportable buffer");
      type_index = *t;
    }
    VkMemoryDedicatedAllocateInfo dedicated{VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO};
    dedicated.buffer = s.buffer;
    VkExportMemoryAllocateInfo export_info{VK_STRUCTURE_TYPE_EXPORT_MEMORY_ALLOCATE_INFO};
    export_info.pNext = &dedicated;
    export_info.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT;
    VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.pNext = &export_info;
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = type_index;
    VkResult r = vkAllocateMemory(vd, &ai, nullptr, &s.memory);
    if (r != VK_SUCCESS)
      return vk::vk_error(what + ": vkAllocateMemory of " + mib(req.size) + " (the pool needs " +
                              mib(segment_bytes * segment_count) + " of device memory)",
                          r);
    r = vkBindBufferMemory(vd, s.buffer, s.memory, 0);
    if (r != VK_SUCCESS) return vk::vk_error(what + ": vkBindBufferMemory", r);
    VkMemoryGetFdInfoKHR gi{VK_STRUCTURE_TYPE_MEMORY_GET_FD_INFO_KHR};
    gi.memory = s.memory;
    gi.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT;
    r = d.get_memory_fd(vd, &gi, &s.fd);
    if (r != VK_SUCCESS) return vk::vk_error(what + ": vkGetMemoryFdKHR", r);
  }
  pm->note_ = std::to_string(segment_count) + " exported segments of " + mib(segment_bytes) +
              " on " + d.name() + " (" + d.driver() + ", device " + vk::uuid_string(d.uuid()) +
              ", memory type " + std::to_string(type_index) + ")";
  return pm;
}

VkPoolMemory::~VkPoolMemory() {
  if (!device_) return;
  VkDevice vd = device_->device();
  vkDeviceWaitIdle(vd);
  for (Segment& s : segments_) {
    if (s.fd >= 0) ::close(s.fd);
    if (s.buffer) vkDestroyBuffer(vd, s.buffer, nullptr);
    if (s.memory) vkFreeMemory(vd, s.memory, nullptr);
  }
}

std::vector<int> VkPoolMemory::fds() const {
  std::vector<int> out;
  for (const Segment& s : segments_) out.push_back(s.fd);
  return out;
}

std::string VkPoolMemory::device_uuid() const {
  const vk::DeviceUuid& u = device_->uuid();
  return std::string(reinterpret_cast<const char*>(u.data()), u.size());
}

}  // namespace moepool
#endif  // MOEPOOL_DAEMON_HAVE_VULKAN
