// One Vulkan device opened for moepool: the instance, the chosen physical device, a
// logical device with a compute queue (and a transfer queue, the same one where the
// device has no separate transfer family), and the facts the rest of kernels/ and the
// daemon's VRAM backend check: deviceUUID, driver, limits and which external-memory
// extensions are on. Both workers (kernels) and moepoold (the VRAM backend) open one.
// Thread safety: the accessors are immutable after open(); submit_and_wait() locks its
// queue, so any thread may call it. Command pools are not shared: callers make their own.
#pragma once

#include <vulkan/vulkan.h>

#include <array>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>

#include "moepool/status.h"

namespace moepool::vk {

// Returns "VK_ERROR_..." for a VkResult.
const char* result_name(VkResult r);
// An error Status for a failed Vulkan call: "<what>: VK_ERROR_...". kUnavailable for
// device loss and out-of-memory, kInternal otherwise.
Status vk_error(const std::string& what, VkResult r);

using DeviceUuid = std::array<uint8_t, VK_UUID_SIZE>;
// "6d657361-3232-..." (the form vulkaninfo prints).
std::string uuid_string(const DeviceUuid& uuid);

struct DeviceOptions {
  // Which physical device: -1 picks the first discrete GPU, else the first integrated
  // GPU, else the first device (lavapipe); n >= 0 picks the n-th as enumerated. The
  // environment variable MOEPOOL_VK_DEVICE overrides -1.
  int index = -1;
  // Fail unless VK_KHR_external_memory_fd is supported (the VRAM backend and VRAM imports).
  bool require_external_memory_fd = false;
  // Fail unless VK_EXT_external_memory_host is supported (host pool imports).
  bool require_external_memory_host = false;
};

class Device {
 public:
  // Opens the device. kUnavailable when there is no Vulkan loader, no device, or the
  // chosen one lacks what the options require (the message says which).
  static Result<std::unique_ptr<Device>> open(const DeviceOptions& options = {});
  ~Device();
  Device(const Device&) = delete;
  Device& operator=(const Device&) = delete;

  VkInstance instance() const { return instance_; }
  VkPhysicalDevice physical() const { return physical_; }
  VkDevice device() const { return device_; }

  uint32_t compute_family() const { return compute_family_; }
  VkQueue compute_queue() const { return compute_queue_; }
  // A transfer-capable queue; equals the compute queue (and family) where the device
  // has no separate transfer family.
  uint32_t transfer_family() const { return transfer_family_; }
  VkQueue transfer_queue() const { return transfer_queue_; }

  const DeviceUuid& uuid() const { return uuid_; }
  const std::string& name() const { return name_; }            // "NVIDIA H100 80GB HBM3"
  const std::string& driver() const { return driver_; }        // "NVIDIA 580.65.06", "llvmpipe ..."
  VkPhysicalDeviceType type() const { return type_; }
  uint32_t vendor_id() const { return vendor_id_; }
  const VkPhysicalDeviceLimits& limits() const { return limits_; }
  uint32_t subgroup_size() const { return subgroup_size_; }
  uint64_t max_allocation_bytes() const { return max_allocation_bytes_; }
  // VK_EXT_external_memory_host's minImportedHostPointerAlignment (0 when not enabled).
  uint64_t host_import_alignment() const { return host_import_alignment_; }
  bool has_external_memory_fd() const { return external_memory_fd_; }
  bool has_external_memory_host() const { return external_memory_host_; }
  // shaderFloat16, storageBuffer16BitAccess, storageBuffer8BitAccess, shaderInt8,
  // timelineSemaphore: enabled when the device has them.
  bool has_float16() const { return float16_; }
  bool has_8bit_storage() const { return storage8_; }
  bool has_16bit_storage() const { return storage16_; }
  bool has_timeline_semaphore() const { return timeline_semaphore_; }
  // VK_KHR_shader_integer_dot_product's shaderIntegerDotProduct (enabled when present), and
  // whether its signed 4x8-bit packed dot product is a hardware instruction.
  bool has_int_dot() const { return int_dot_; }
  bool int_dot_accelerated() const { return int_dot_accelerated_; }
  // Subgroup basic and arithmetic operations in compute shaders (every MoE kernel uses them).
  bool has_subgroup_arithmetic() const { return subgroup_arithmetic_; }
  // What the int8 decode kernels need (integer dot products).
  bool has_int8_decode() const { return int_dot_; }
  // VK_KHR_pipeline_executable_properties' pipelineExecutableInfo (enabled when present):
  // pipelines can report the driver's per-executable statistics (registers, spills...).
  bool has_pipeline_statistics() const { return pipeline_statistics_; }
  // timestampPeriod (ns per tick) of the compute queue, 0 when it has no timestamps.
  double timestamp_period_ns() const { return timestamp_period_ns_; }

  // Index of a memory type allowed by `type_bits` that has every flag of `want`; NotFound
  // when none.
  Result<uint32_t> find_memory_type(uint32_t type_bits, VkMemoryPropertyFlags want) const;
  // Size of the largest heap holding a memory type with `flags`.
  uint64_t heap_bytes(VkMemoryPropertyFlags flags) const;

  // Extension entry points, loaded at open (null when the extension is off).
  PFN_vkGetMemoryFdKHR get_memory_fd = nullptr;
  PFN_vkGetMemoryFdPropertiesKHR get_memory_fd_properties = nullptr;
  PFN_vkGetMemoryHostPointerPropertiesEXT get_memory_host_pointer_properties = nullptr;
  PFN_vkGetPipelineExecutablePropertiesKHR get_pipeline_executable_properties = nullptr;
  PFN_vkGetPipelineExecutableStatisticsKHR get_pipeline_executable_statistics = nullptr;

  // Submits one command buffer to the compute (or transfer) queue and waits for it on a
  // fence. The queue is locked for the submit.
  Status submit_and_wait(VkCommandBuffer cmd, bool transfer = false) const;
  // Submits with a fence the caller waits on (the queue is locked for the submit).
  Status submit(VkCommandBuffer cmd, VkFence fence, bool transfer = false) const;

 private:
  Device() = default;

  VkInstance instance_ = VK_NULL_HANDLE;
  VkPhysicalDevice physical_ = VK_NULL_HANDLE;
  VkDevice device_ = VK_NULL_HANDLE;
  uint32_t compute_family_ = 0;
  uint32_t transfer_family_ = 0;
  VkQueue compute_queue_ = VK_NULL_HANDLE;
  VkQueue transfer_queue_ = VK_NULL_HANDLE;
  DeviceUuid uuid_{};
  std::string name_;
  std::string driver_;
  VkPhysicalDeviceType type_ = VK_PHYSICAL_DEVICE_TYPE_OTHER;
  uint32_t vendor_id_ = 0;
  VkPhysicalDeviceLimits limits_{};
  VkPhysicalDeviceMemoryProperties memory_{};
  uint32_t subgroup_size_ = 0;
  uint64_t max_allocation_bytes_ = 0;
  uint64_t host_import_alignment_ = 0;
  bool external_memory_fd_ = false;
  bool external_memory_host_ = false;
  bool float16_ = false;
  bool storage8_ = false;
  bool storage16_ = false;
  bool timeline_semaphore_ = false;
  bool int_dot_ = false;
  bool int_dot_accelerated_ = false;
  bool subgroup_arithmetic_ = false;
  bool pipeline_statistics_ = false;
  double timestamp_period_ns_ = 0;
  // One lock per queue (they may be the same queue: then both point at compute_mutex_).
  mutable std::mutex compute_mutex_;
  mutable std::mutex transfer_mutex_own_;
  std::mutex* transfer_mutex_ = nullptr;
};

// Owns one VkCommandPool and one primary command buffer on a queue family of a Device.
// Thread safety: one thread at a time (a command pool is externally synchronized).
class CommandBuffer {
 public:
  static Result<std::unique_ptr<CommandBuffer>> create(const Device& device, uint32_t family);
  ~CommandBuffer();
  // Resets and begins recording (one-time submit).
  Status begin();
  Status end();
  VkCommandBuffer handle() const { return cmd_; }

 private:
  CommandBuffer(const Device& d) : device_(d) {}
  const Device& device_;
  VkCommandPool pool_ = VK_NULL_HANDLE;
  VkCommandBuffer cmd_ = VK_NULL_HANDLE;
};

// Records a global memory barrier: writes (src_access) of the `src` stages become visible
// to the accesses (dst_access) of the `dst` stages.
void memory_barrier(VkCommandBuffer cmd, VkPipelineStageFlags src, VkAccessFlags src_access,
                    VkPipelineStageFlags dst, VkAccessFlags dst_access);

}  // namespace moepool::vk
