#include "kernels/vk_buffer.h"

#include <cstring>
#include <string>

namespace moepool::vk {

Result<std::unique_ptr<Buffer>> Buffer::create(const Device& device, uint64_t bytes,
                                               VkBufferUsageFlags usage, MemoryKind kind) {
  if (bytes == 0) return InvalidArgument("vk::Buffer: size must be > 0");
  std::unique_ptr<Buffer> b(new Buffer(device));
  b->bytes_ = bytes;
  b->kind_ = kind;
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.size = bytes;
  bci.usage = usage | VK_BUFFER_USAGE_TRANSFER_SRC_BIT | VK_BUFFER_USAGE_TRANSFER_DST_BIT;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  VkResult r = vkCreateBuffer(device.device(), &bci, nullptr, &b->buffer_);
  if (r != VK_SUCCESS) return vk_error("vkCreateBuffer (" + std::to_string(bytes) + " bytes)", r);
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(device.device(), b->buffer_, &req);
  const VkMemoryPropertyFlags want =
      kind == MemoryKind::kHostVisible
          ? VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT | VK_MEMORY_PROPERTY_HOST_COHERENT_BIT
          : VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT;
  Result<uint32_t> type = device.find_memory_type(req.memoryTypeBits, want);
  if (!type.ok()) {
    return ResourceExhausted("vk::Buffer: no memory type for a " + std::to_string(bytes) +
                             "-byte " +
                             (kind == MemoryKind::kHostVisible ? "host-visible" : "device-local") +
                             " buffer: " + type.status().message());
  }
  VkMemoryAllocateInfo mai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  mai.allocationSize = req.size;
  mai.memoryTypeIndex = *type;
  r = vkAllocateMemory(device.device(), &mai, nullptr, &b->memory_);
  if (r != VK_SUCCESS) {
    return ResourceExhausted("vk::Buffer: vkAllocateMemory of " + std::to_string(req.size) +
                             " bytes: " + result_name(r));
  }
  r = vkBindBufferMemory(device.device(), b->buffer_, b->memory_, 0);
  if (r != VK_SUCCESS) return vk_error("vkBindBufferMemory", r);
  if (kind == MemoryKind::kHostVisible) {
    r = vkMapMemory(device.device(), b->memory_, 0, VK_WHOLE_SIZE, 0, &b->mapped_);
    if (r != VK_SUCCESS) return vk_error("vkMapMemory", r);
  }
  return b;
}

Buffer::~Buffer() {
  if (mapped_) vkUnmapMemory(device_.device(), memory_);
  if (buffer_) vkDestroyBuffer(device_.device(), buffer_, nullptr);
  if (memory_) vkFreeMemory(device_.device(), memory_, nullptr);
}

namespace {

Status check_range(const char* fn, const Buffer& b, uint64_t offset, uint64_t bytes) {
  if (offset > b.bytes() || bytes > b.bytes() - offset) {
    return InvalidArgument(std::string(fn) + ": range [" + std::to_string(offset) + ", +" +
                           std::to_string(bytes) + ") is outside the " + std::to_string(b.bytes()) +
                           "-byte buffer");
  }
  return Status::Ok();
}

// Records one copy between `a` and `b` and waits for it.
Status copy_and_wait(const Device& device, VkBuffer from, uint64_t from_offset, VkBuffer to,
                     uint64_t to_offset, uint64_t bytes) {
  auto cb = CommandBuffer::create(device, device.compute_family());
  if (!cb.ok()) return cb.status();
  MOEPOOL_RETURN_IF_ERROR((*cb)->begin());
  VkBufferCopy region{from_offset, to_offset, bytes};
  vkCmdCopyBuffer((*cb)->handle(), from, to, 1, &region);
  MOEPOOL_RETURN_IF_ERROR((*cb)->end());
  return device.submit_and_wait((*cb)->handle());
}

}  // namespace

Status upload(const Device& device, Buffer& dst, uint64_t offset, const void* src, uint64_t bytes) {
  MOEPOOL_RETURN_IF_ERROR(check_range("vk::upload", dst, offset, bytes));
  if (bytes == 0) return Status::Ok();
  if (dst.mapped()) {
    std::memcpy(static_cast<uint8_t*>(dst.mapped()) + offset, src, bytes);
    return Status::Ok();
  }
  auto staging = Buffer::create(device, bytes, 0, MemoryKind::kHostVisible);
  if (!staging.ok()) return staging.status();
  std::memcpy((*staging)->mapped(), src, bytes);
  return copy_and_wait(device, (*staging)->handle(), 0, dst.handle(), offset, bytes);
}

Status download(const Device& device, const Buffer& src, uint64_t offset, void* dst,
                uint64_t bytes) {
  MOEPOOL_RETURN_IF_ERROR(check_range("vk::download", src, offset, bytes));
  if (bytes == 0) return Status::Ok();
  if (src.mapped()) {
    std::memcpy(dst, static_cast<const uint8_t*>(src.mapped()) + offset, bytes);
    return Status::Ok();
  }
  auto staging = Buffer::create(device, bytes, 0, MemoryKind::kHostVisible);
  if (!staging.ok()) return staging.status();
  MOEPOOL_RETURN_IF_ERROR(
      copy_and_wait(device, src.handle(), offset, (*staging)->handle(), 0, bytes));
  std::memcpy(dst, (*staging)->mapped(), bytes);
  return Status::Ok();
}

}  // namespace moepool::vk
