// A small owned VkBuffer with its own VkDeviceMemory: device-local, or host-visible and
// mapped for its lifetime; plus upload/download helpers that go through a staging buffer.
// For the kernels' inputs, outputs and scratch, and for tests' weight segments (the pool's
// segments are imported by vk_memory_import instead).
// Thread safety: a Buffer is used by one thread at a time; upload()/download() make their
// own command pool and wait, so any thread may call them on buffers no other thread uses.
#pragma once

#include <vulkan/vulkan.h>

#include <cstdint>
#include <memory>

#include "kernels/vk_device.h"
#include "moepool/status.h"

namespace moepool::vk {

enum class MemoryKind {
  kDeviceLocal,  // fastest for the GPU; reached from the host by upload()/download()
  kHostVisible,  // host-visible + coherent, mapped at creation (mapped() is valid)
};

class Buffer {
 public:
  // Creates a buffer of `bytes` (> 0) with `usage` plus TRANSFER_SRC and TRANSFER_DST.
  // kResourceExhausted when no memory type fits or the allocation fails.
  static Result<std::unique_ptr<Buffer>> create(const Device& device, uint64_t bytes,
                                                VkBufferUsageFlags usage, MemoryKind kind);
  ~Buffer();
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;

  VkBuffer handle() const { return buffer_; }
  uint64_t bytes() const { return bytes_; }
  MemoryKind kind() const { return kind_; }
  // The mapping of a kHostVisible buffer, null for a device-local one.
  void* mapped() const { return mapped_; }

 private:
  explicit Buffer(const Device& d) : device_(d) {}
  const Device& device_;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  uint64_t bytes_ = 0;
  MemoryKind kind_ = MemoryKind::kDeviceLocal;
  void* mapped_ = nullptr;
};

// Copies `bytes` from `src` into `dst` at `offset` (a memcpy when dst is mapped, else through
// a staging buffer and a transfer on the compute queue), and waits. InvalidArgument when the
// range does not fit.
Status upload(const Device& device, Buffer& dst, uint64_t offset, const void* src, uint64_t bytes);
// Copies `bytes` of `src` at `offset` into `dst`, the same way, and waits.
Status download(const Device& device, const Buffer& src, uint64_t offset, void* dst,
                uint64_t bytes);

}  // namespace moepool::vk
