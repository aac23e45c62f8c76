#include "kernels/vk_memory_import.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

#include "moepool/client.h"

namespace moepool::vk {
namespace {

std::string hex(uint64_t v) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

// Closes a descriptor it owns when it goes out of scope, unless released.
class FdGuard {
 public:
  explicit FdGuard(int fd) : fd_(fd) {}
  ~FdGuard() {
    if (fd_ >= 0) close(fd_);
  }
  FdGuard(const FdGuard&) = delete;
  FdGuard& operator=(const FdGuard&) = delete;
  void release() { fd_ = -1; }

 private:
  int fd_;
};

// A buffer of `bytes` for memory of external handle type `type`, destroyed unless taken.
struct BufferGuard {
  VkDevice device = VK_NULL_HANDLE;
  VkBuffer buffer = VK_NULL_HANDLE;
  ~BufferGuard() {
    if (buffer) vkDestroyBuffer(device, buffer, nullptr);
  }
  VkBuffer take() { return std::exchange(buffer, VK_NULL_HANDLE); }
};

Status create_external_buffer(const Device& d, uint64_t bytes,
                              VkExternalMemoryHandleTypeFlagBits type, VkBufferUsageFlags usage,
                              BufferGuard* out) {
  VkExternalMemoryBufferCreateInfo ext{VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO};
  ext.handleTypes = type;
  VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
  bci.pNext = &ext;
  bci.size = bytes;
  bci.usage = usage;
  bci.sharingMode = VK_SHARING_MODE_EXCLUSIVE;
  out->device = d.device();
  VkResult r = vkCreateBuffer(d.device(), &bci, nullptr, &out->buffer);
  if (r != VK_SUCCESS) {
    out->buffer = VK_NULL_HANDLE;
    return vk_error("vkCreateBuffer(" + std::to_string(bytes) + " bytes, external memory)", r);
  }
  return Status::Ok();
}

VkMemoryRequirements requirements(const Device& d, VkBuffer buffer) {
  VkMemoryRequirements req;
  vkGetBufferMemoryRequirements(d.device(), buffer, &req);
  return req;
}

}  // namespace

ImportedSegment& ImportedSegment::operator=(ImportedSegment&& o) noexcept {
  if (this != &o) {
    reset();
    device_ = std::exchange(o.device_, VK_NULL_HANDLE);
    buffer_ = std::exchange(o.buffer_, VK_NULL_HANDLE);
    memory_ = std::exchange(o.memory_, VK_NULL_HANDLE);
    bytes_ = std::exchange(o.bytes_, 0);
    memory_type_ = std::exchange(o.memory_type_, 0);
  }
  return *this;
}

void ImportedSegment::reset() {
  // The buffer goes first: memory is freed only once nothing is bound to it.
  if (buffer_) vkDestroyBuffer(device_, buffer_, nullptr);
  if (memory_) vkFreeMemory(device_, memory_, nullptr);
  buffer_ = VK_NULL_HANDLE;
  memory_ = VK_NULL_HANDLE;
  bytes_ = 0;
}

namespace {

// Whether the driver imports a small writable anonymous mapping: tells a driver that
// refuses read-only pages apart from one that refuses host imports altogether.
bool imports_writable_host_memory(const Device& d) {
  const uint64_t n = d.host_import_alignment() ? d.host_import_alignment() : 4096;
  void* p = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return false;
  std::memset(p, 0, n);
  bool ok = false;
  VkMemoryHostPointerPropertiesEXT props{VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT};
  if (d.get_memory_host_pointer_properties(d.device(),
                                           VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT,
                                           p, &props) == VK_SUCCESS &&
      props.memoryTypeBits != 0) {
    auto type = d.find_memory_type(props.memoryTypeBits, 0);
    VkImportMemoryHostPointerInfoEXT imp{VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT};
    imp.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
    imp.pHostPointer = p;
    VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.pNext = &imp;
    ai.allocationSize = n;
    ai.memoryTypeIndex = type.ok() ? *type : 0;
    VkDeviceMemory mem = VK_NULL_HANDLE;
    if (type.ok() && vkAllocateMemory(d.device(), &ai, nullptr, &mem) == VK_SUCCESS) {
      ok = true;
      vkFreeMemory(d.device(), mem, nullptr);
    }
  }
  munmap(p, n);
  return ok;
}

}  // namespace

Result<ImportedSegment> import_host_segment(const Device& d, const void* data, uint64_t bytes,
                                            uint32_t index) {
  const std::string what = "host pool segment " + std::to_string(index);
  if (!d.has_external_memory_host() || !d.get_memory_host_pointer_properties)
    return FailedPrecondition("cannot import " + what + ": " + d.name() +
                              " does not support VK_EXT_external_memory_host");
  const uint64_t align = d.host_import_alignment() ? d.host_import_alignment() : 4096;
  const auto addr = reinterpret_cast<uintptr_t>(data);
  if (data == nullptr || bytes == 0 || addr % align != 0 || bytes % align != 0)
    return InvalidArgument("cannot import " + what + " at " + hex(addr) + " (" +
                           std::to_string(bytes) +
                           " bytes): address and size must be non-zero "
                           "multiples of minImportedHostPointerAlignment " +
                           std::to_string(align) + " of " + d.name());

  void* ptr = const_cast<void*>(data);  // Vulkan's signature; the kernels only read it
  VkMemoryHostPointerPropertiesEXT props{VK_STRUCTURE_TYPE_MEMORY_HOST_POINTER_PROPERTIES_EXT};
  VkResult r = d.get_memory_host_pointer_properties(
      d.device(), VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT, ptr, &props);
  if (r != VK_SUCCESS)
    return vk_error(
        "vkGetMemoryHostPointerPropertiesEXT(" + what + " at " + hex(addr) + ", mapped read-only)",
        r);

  BufferGuard buf;
  MOEPOOL_RETURN_IF_ERROR(
      create_external_buffer(d, bytes, VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT,
                             kImportedBufferUsage, &buf));
  VkMemoryRequirements req = requirements(d, buf.buffer);
  if (req.size > bytes)
    return Internal("cannot import " + what + ": a buffer over it needs " +
                    std::to_string(req.size) + " bytes of memory, more than its " +
                    std::to_string(bytes));
  uint32_t bits = props.memoryTypeBits & req.memoryTypeBits;
  if (bits == 0)
    return FailedPrecondition("cannot import " + what + ": no memory type of " + d.name() +
                              " both holds its host pointer (types " + hex(props.memoryTypeBits) +
                              ") and backs a storage buffer (" + hex(req.memoryTypeBits) + ")");
  auto type = d.find_memory_type(bits, 0);
  if (!type.ok()) return type.status();

  VkImportMemoryHostPointerInfoEXT imp{VK_STRUCTURE_TYPE_IMPORT_MEMORY_HOST_POINTER_INFO_EXT};
  imp.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_HOST_ALLOCATION_BIT_EXT;
  imp.pHostPointer = ptr;
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.pNext = &imp;
  ai.allocationSize = bytes;
  ai.memoryTypeIndex = *type;
  ImportedSegment seg;
  seg.device_ = d.device();
  r = vkAllocateMemory(d.device(), &ai, nullptr, &seg.memory_);
  if (r != VK_SUCCESS) {
    seg.memory_ = VK_NULL_HANDLE;
    const std::string where = what + " at " + hex(addr) + " (" + std::to_string(bytes) + " bytes)";
    if (imports_writable_host_memory(d))
      return FailedPrecondition(
          d.name() + " (" + d.driver() + ") refused to import " + where + " with " +
          result_name(r) +
          " but imports writable host memory: this driver imports only writable mappings "
          "(NVIDIA 580 does so), and workers map the pool read-only. Use a VRAM pool "
          "(pool.backend = \"vulkan\") on this GPU");
    return vk_error(d.name() + " refused to import " + where, r);
  }
  r = vkBindBufferMemory(d.device(), buf.buffer, seg.memory_, 0);
  if (r != VK_SUCCESS) return vk_error("vkBindBufferMemory(" + what + ")", r);
  seg.buffer_ = buf.take();
  seg.bytes_ = bytes;
  seg.memory_type_ = *type;
  return seg;
}

Result<VkBuffer> create_vram_segment_buffer(const Device& d, uint64_t bytes) {
  BufferGuard buf;
  MOEPOOL_RETURN_IF_ERROR(create_external_buffer(
      d, bytes, VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT, kVramSegmentUsage, &buf));
  return buf.take();
}

Result<uint32_t> opaque_fd_memory_type(const Device& d, uint64_t bytes) {
  BufferGuard buf;
  MOEPOOL_RETURN_IF_ERROR(create_external_buffer(
      d, bytes, VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT, kVramSegmentUsage, &buf));
  VkMemoryRequirements req = requirements(d, buf.buffer);
  return d.find_memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
}

Result<ImportedSegment> import_fd_segment(const Device& d, int fd, uint64_t bytes,
                                          const DeviceUuid& exporter, uint32_t index) {
  FdGuard owned(fd);  // closed on every failure below; released once the driver owns it
  const std::string what = "VRAM pool segment " + std::to_string(index);
  if (exporter != d.uuid())
    return FailedPrecondition(what + " lives on the GPU with deviceUUID " + uuid_string(exporter) +
                              " but this worker's Vulkan device " + d.name() + " has deviceUUID " +
                              uuid_string(d.uuid()) +
                              ": VRAM segments import only on the GPU that exported them "
                              "(pick that GPU with MOEPOOL_VK_DEVICE)");
  if (!d.has_external_memory_fd())
    return FailedPrecondition("cannot import " + what + ": " + d.name() +
                              " does not support VK_KHR_external_memory_fd");
  if (fd < 0) return InvalidArgument("cannot import " + what + ": no file descriptor");
  if (bytes == 0) return InvalidArgument("cannot import " + what + ": 0 bytes");

  BufferGuard buf;
  MOEPOOL_RETURN_IF_ERROR(create_external_buffer(
      d, bytes, VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT, kVramSegmentUsage, &buf));
  VkMemoryRequirements req = requirements(d, buf.buffer);
  auto type = d.find_memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_DEVICE_LOCAL_BIT);
  if (!type.ok())
    return FailedPrecondition("cannot import " + what + ": " + type.status().message());

  VkMemoryDedicatedAllocateInfo ded{VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO};
  ded.buffer = buf.buffer;
  VkImportMemoryFdInfoKHR imp{VK_STRUCTURE_TYPE_IMPORT_MEMORY_FD_INFO_KHR};
  imp.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT;
  imp.fd = fd;
  imp.pNext = &ded;  // the daemon's export is dedicated to an identical buffer
  VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
  ai.pNext = &imp;
  ai.allocationSize = req.size;  // what the exporter allocated for the same buffer
  ai.memoryTypeIndex = *type;
  ImportedSegment seg;
  seg.device_ = d.device();
  VkResult r = vkAllocateMemory(d.device(), &ai, nullptr, &seg.memory_);
  if (r != VK_SUCCESS) {
    // A failed import leaves the fd with us: `owned` closes it.
    seg.memory_ = VK_NULL_HANDLE;
    return vk_error("importing " + what + " (" + std::to_string(bytes) + " bytes, memory type " +
                        std::to_string(*type) + ") on " + d.name(),
                    r);
  }
  owned.release();  // the driver owns the fd now; vkFreeMemory closes it
  r = vkBindBufferMemory(d.device(), buf.buffer, seg.memory_, 0);
  if (r != VK_SUCCESS) return vk_error("vkBindBufferMemory(" + what + ")", r);
  seg.buffer_ = buf.take();
  seg.bytes_ = bytes;
  seg.memory_type_ = *type;
  return seg;
}

Result<DeviceUuid> parse_uuid(std::string_view text) {
  DeviceUuid u{};
  if (text.size() == u.size()) {  // the raw 16 bytes
    for (size_t i = 0; i < u.size(); ++i) u[i] = static_cast<uint8_t>(text[i]);
    return u;
  }
  std::string digits;
  for (char c : text)
    if (c != '-') digits += c;
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  bool ok = digits.size() == 2 * u.size();
  for (size_t i = 0; ok && i < u.size(); ++i) {
    int hi = nibble(digits[2 * i]), lo = nibble(digits[2 * i + 1]);
    ok = hi >= 0 && lo >= 0;
    u[i] = static_cast<uint8_t>(hi * 16 + lo);
  }
  if (!ok)
    return InvalidArgument("device UUID \"" + std::string(text) +
                           "\" is neither 16 raw bytes nor 32 hex digits");
  return u;
}

Result<kernels::ExpertLocation> lease_location(const Lease& lease, uint64_t segment_bytes,
                                               uint32_t segment_count,
                                               std::span<const uint64_t> buffer_bytes) {
  const std::string who = "lease of expert " + std::to_string(lease.expert);
  if (segment_bytes == 0) return InvalidArgument(who + ": segment_bytes is 0");
  const uint64_t slot = lease.slot_index * lease.stride;
  const uint64_t segment = slot / segment_bytes;
  const uint64_t base = slot % segment_bytes;
  if (segment_count != 0 && segment >= segment_count)
    return InvalidArgument(who + ": slot " + std::to_string(lease.slot_index) + " (stride " +
                           std::to_string(lease.stride) + ") lies in segment " +
                           std::to_string(segment) + " of a pool of " +
                           std::to_string(segment_count));
  kernels::ExpertLocation out;
  bool gate = false, up = false, down = false;
  for (const ProjectionView& p : lease.projections) {
    const uint64_t off = base + p.offset_in_slot;
    if (segment < buffer_bytes.size() && off + p.bytes > buffer_bytes[segment])
      return InvalidArgument(who + ": projection " + std::to_string(static_cast<int>(p.kind)) +
                             " [" + std::to_string(off) + ", +" + std::to_string(p.bytes) +
                             ") of segment " + std::to_string(segment) + " lies past the " +
                             std::to_string(buffer_bytes[segment]) + " bytes imported from it");
    kernels::ProjLocation a{static_cast<uint32_t>(segment), off};
    switch (p.kind) {
      case Projection::kGate:
        out.gate = a, gate = true;
        break;
      case Projection::kUp:
        out.up = a, up = true;
        break;
      case Projection::kDown:
        out.down = a, down = true;
        break;
      case Projection::kGateUp:
        out.gate = a;
        out.up = {a.segment, off + p.bytes / 2};
        gate = up = true;
        break;
    }
  }
  if (!gate || !up || !down)
    return InvalidArgument(who +
                           ": needs gate, up and down (or gate_up and down) projections, has " +
                           std::to_string(lease.projections.size()));
  return out;
}

void ImportedPool::add(ImportedSegment s) {
  buffers_.push_back(s.buffer());
  bytes_.push_back(s.bytes());
  segments_.push_back(std::move(s));
}

Result<std::unique_ptr<ImportedPool>> ImportedPool::import_host(const Device& d,
                                                                const uint8_t* base,
                                                                uint64_t segment_bytes,
                                                                uint32_t segment_count,
                                                                uint32_t window) {
  if (window == 0) return InvalidArgument("host pool import: window of 0 segments");
  std::unique_ptr<ImportedPool> pool(new ImportedPool());
  pool->segment_bytes_ = segment_bytes;
  for (uint32_t i = 0; i < segment_count; ++i) {
    const uint64_t span = std::min<uint64_t>(window, segment_count - i) * segment_bytes;
    auto s = import_host_segment(d, base ? base + uint64_t{i} * segment_bytes : nullptr, span, i);
    if (!s.ok()) return s.status();
    pool->add(std::move(s).value());
  }
  return pool;
}

Result<kernels::ExpertLocation> ImportedPool::locate(const Lease& lease) const {
  return lease_location(lease, segment_bytes_, segment_count(), bytes_);
}

ImportedPool::Subset ImportedPool::subset(std::span<kernels::ExpertLocation> locations) const {
  std::vector<uint32_t> used;
  for (const auto& l : locations)
    for (uint32_t s : {l.gate.segment, l.up.segment, l.down.segment}) used.push_back(s);
  std::sort(used.begin(), used.end());
  used.erase(std::unique(used.begin(), used.end()), used.end());
  auto index = [&](uint32_t s) {
    return static_cast<uint32_t>(std::lower_bound(used.begin(), used.end(), s) - used.begin());
  };
  for (auto& l : locations) {
    l.gate.segment = index(l.gate.segment);
    l.up.segment = index(l.up.segment);
    l.down.segment = index(l.down.segment);
  }
  Subset out;
  for (uint32_t s : used) {
    out.buffers.push_back(buffers_[s]);
    out.bytes.push_back(bytes_[s]);
  }
  return out;
}

Result<std::unique_ptr<ImportedPool>> ImportedPool::import_fds(const Device& d,
                                                               std::vector<int> fds,
                                                               uint64_t segment_bytes,
                                                               const DeviceUuid& exporter) {
  std::unique_ptr<ImportedPool> pool(new ImportedPool());
  pool->segment_bytes_ = segment_bytes;
  for (size_t i = 0; i < fds.size(); ++i) {
    auto s = import_fd_segment(d, std::exchange(fds[i], -1), segment_bytes, exporter,
                               static_cast<uint32_t>(i));
    if (!s.ok()) {
      for (size_t j = i + 1; j < fds.size(); ++j)
        if (fds[j] >= 0) close(fds[j]);  // consumed, as documented
      return s.status();
    }
    pool->add(std::move(s).value());
  }
  return pool;
}

}  // namespace moepool::vk
