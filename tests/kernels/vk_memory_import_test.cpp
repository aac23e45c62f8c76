// Importing pool segments into a worker's Vulkan device (kernels/vk_memory_import.h):
// host memory through VK_EXT_external_memory_host (a read-only memfd mapping, as workers
// map the pool) and device memory exported as OPAQUE_FD, with the GPU reading the bytes
// back. Skips with the reason where no Vulkan device or extension exists.
#include "kernels/vk_memory_import.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <vector>

#include "moepool/client.h"

namespace moepool::vk {
namespace {

// A host-visible buffer the GPU copies into, to read back what it sees.
class Readback {
 public:
  Readback(const Device& d, uint64_t bytes) : d_(d), bytes_(bytes) {}
  ~Readback() {
    if (mapped_) vkUnmapMemory(d_.device(), memory_);
    if (buffer_) vkDestroyBuffer(d_.device(), buffer_, nullptr);
    if (memory_) vkFreeMemory(d_.device(), memory_, nullptr);
  }
  Status init(VkBufferUsageFlags usage = VK_BUFFER_USAGE_TRANSFER_DST_BIT) {
    VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bci.size = bytes_;
    bci.usage = usage;
    VkResult r = vkCreateBuffer(d_.device(), &bci, nullptr, &buffer_);
    if (r != VK_SUCCESS) return vk_error("vkCreateBuffer", r);
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(d_.device(), buffer_, &req);
    auto type = d_.find_memory_type(req.memoryTypeBits, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                                            VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
    if (!type.ok()) return type.status();
    VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = *type;
    r = vkAllocateMemory(d_.device(), &ai, nullptr, &memory_);
    if (r != VK_SUCCESS) return vk_error("vkAllocateMemory", r);
    r = vkBindBufferMemory(d_.device(), buffer_, memory_, 0);
    if (r != VK_SUCCESS) return vk_error("vkBindBufferMemory", r);
    r = vkMapMemory(d_.device(), memory_, 0, VK_WHOLE_SIZE, 0, &mapped_);
    if (r != VK_SUCCESS) return vk_error("vkMapMemory", r);
    return Status::Ok();
  }
  VkBuffer buffer() const { return buffer_; }
  uint8_t* data() const { return static_cast<uint8_t*>(mapped_); }

 private:
  const Device& d_;
  uint64_t bytes_;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
  void* mapped_ = nullptr;
};

// Copies [src_offset, + bytes) of `src` into `dst` at dst_offset on the GPU and waits.
Status gpu_copy(const Device& d, VkBuffer src, uint64_t src_offset, VkBuffer dst,
                uint64_t dst_offset, uint64_t bytes) {
  auto cb = CommandBuffer::create(d, d.compute_family());
  if (!cb.ok()) return cb.status();
  MOEPOOL_RETURN_IF_ERROR((*cb)->begin());
  VkBufferCopy region{src_offset, dst_offset, bytes};
  vkCmdCopyBuffer((*cb)->handle(), src, dst, 1, &region);
  MOEPOOL_RETURN_IF_ERROR((*cb)->end());
  return d.submit_and_wait((*cb)->handle());
}

uint8_t pattern(uint64_t i, uint32_t seed) {
  return static_cast<uint8_t>((i * 2654435761u + seed) >> 7);
}

// A memfd of `bytes` filled with pattern(seed), mapped read-only like a worker's pool
// (or writable, for drivers that import only writable host memory).
struct ReadOnlyMapping {
  int fd = -1;
  uint8_t* data = nullptr;
  uint64_t bytes = 0;
  ReadOnlyMapping(uint64_t n, uint32_t seed, bool writable = false) : bytes(n) {
    fd = memfd_create("vk_memory_import_test", MFD_CLOEXEC);
    if (fd < 0 || ftruncate(fd, static_cast<off_t>(n)) != 0) return;
    void* w = mmap(nullptr, n, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (w == MAP_FAILED) return;
    for (uint64_t i = 0; i < n; ++i) static_cast<uint8_t*>(w)[i] = pattern(i, seed);
    munmap(w, n);
    void* r = mmap(nullptr, n, writable ? PROT_READ | PROT_WRITE : PROT_READ, MAP_SHARED, fd, 0);
    if (r != MAP_FAILED) data = static_cast<uint8_t*>(r);
  }
  ~ReadOnlyMapping() {
    if (data) munmap(data, bytes);
    if (fd >= 0) close(fd);
  }
};

std::unique_ptr<Device> open_or_null(std::string* why) {
  auto d = Device::open();
  if (!d.ok()) {
    *why = d.status().message();
    return nullptr;
  }
  return std::move(d).value();
}

#define OPEN_DEVICE_OR_SKIP(var)  \
  std::string why_;               \
  auto var = open_or_null(&why_); \
  if (!var) GTEST_SKIP() << "no Vulkan device: " << why_

TEST(VkMemoryImport, HostSegmentsOfAReadOnlyMemfdMappingAreReadByTheGpu) {
  OPEN_DEVICE_OR_SKIP(dev);
  if (!dev->has_external_memory_host())
    GTEST_SKIP() << dev->name() << " has no VK_EXT_external_memory_host";
  const uint64_t seg = 64 * 1024;
  ReadOnlyMapping m(3 * seg, 7);
  ASSERT_NE(m.data, nullptr) << strerror(errno);
  auto pool = ImportedPool::import_host(*dev, m.data, seg, 3);
  if (!pool.ok() && pool.status().code() == Code::kFailedPrecondition)
    GTEST_SKIP() << pool.status().message();  // e.g. NVIDIA: writable host memory only
  ASSERT_TRUE(pool.ok()) << pool.status().to_string();
  ASSERT_EQ((*pool)->segment_count(), 3u);
  ASSERT_EQ((*pool)->buffers().size(), 3u);
  // Windows of two segments, the last one shorter: a slot may straddle two host segments.
  EXPECT_EQ((*pool)->bytes()[0], 2 * seg);
  EXPECT_EQ((*pool)->bytes()[1], 2 * seg);
  EXPECT_EQ((*pool)->bytes()[2], seg);

  Readback rb(*dev, 3 * seg);
  ASSERT_TRUE(rb.init().ok());
  for (uint32_t i = 0; i < 3; ++i) {
    Status st = gpu_copy(*dev, (*pool)->buffers()[i], 0, rb.buffer(), i * seg, seg);
    ASSERT_TRUE(st.ok()) << st.to_string();
  }
  EXPECT_EQ(std::memcmp(rb.data(), m.data, 3 * seg), 0) << "the GPU read other bytes";
  // Window 0 reaches into segment 1.
  Status st = gpu_copy(*dev, (*pool)->buffers()[0], seg - 100, rb.buffer(), 0, 200);
  ASSERT_TRUE(st.ok()) << st.to_string();
  EXPECT_EQ(std::memcmp(rb.data(), m.data + seg - 100, 200), 0);
}

TEST(VkMemoryImport, SubsetBindsOnlyTheSegmentsLocationsUse) {
  OPEN_DEVICE_OR_SKIP(dev);
  if (!dev->has_external_memory_host())
    GTEST_SKIP() << dev->name() << " has no VK_EXT_external_memory_host";
  const uint64_t seg = 16 * 1024;
  ReadOnlyMapping m(6 * seg, 2, /*writable=*/true);  // imports on every driver
  ASSERT_NE(m.data, nullptr);
  auto pool = ImportedPool::import_host(*dev, m.data, seg, 6, 1);
  ASSERT_TRUE(pool.ok()) << pool.status().to_string();
  EXPECT_EQ((*pool)->bytes()[0], seg);
  std::vector<kernels::ExpertLocation> locs = {{{5, 0}, {5, 64}, {2, 0}}, {{2, 8}, {4, 0}, {4, 8}}};
  auto sub = (*pool)->subset(locs);
  ASSERT_EQ(sub.buffers.size(), 3u);
  EXPECT_EQ(sub.buffers[0], (*pool)->buffers()[2]);
  EXPECT_EQ(sub.buffers[1], (*pool)->buffers()[4]);
  EXPECT_EQ(sub.buffers[2], (*pool)->buffers()[5]);
  EXPECT_EQ(locs[0].gate.segment, 2u);
  EXPECT_EQ(locs[0].up.offset, 64u);
  EXPECT_EQ(locs[0].down.segment, 0u);
  EXPECT_EQ(locs[1].up.segment, 1u);
}

TEST(VkMemoryImport, MisalignedHostPointerOrSizeIsRefusedByName) {
  OPEN_DEVICE_OR_SKIP(dev);
  if (!dev->has_external_memory_host())
    GTEST_SKIP() << dev->name() << " has no VK_EXT_external_memory_host";
  const uint64_t align = dev->host_import_alignment();
  ASSERT_GT(align, 0u);
  ReadOnlyMapping m(4 * align, 1);
  ASSERT_NE(m.data, nullptr);

  auto off = import_host_segment(*dev, m.data + 64, align, 5);
  ASSERT_FALSE(off.ok());
  EXPECT_EQ(off.status().code(), Code::kInvalidArgument);
  const std::string& msg = off.status().message();
  EXPECT_NE(msg.find("segment 5"), std::string::npos) << msg;
  EXPECT_NE(msg.find(std::to_string(align)), std::string::npos) << msg;
  char addr[32];
  std::snprintf(addr, sizeof addr, "0x%lx", reinterpret_cast<unsigned long>(m.data + 64));
  EXPECT_NE(msg.find(addr), std::string::npos) << msg;

  auto size = import_host_segment(*dev, m.data, align + 100, 2);
  ASSERT_FALSE(size.ok());
  EXPECT_EQ(size.status().code(), Code::kInvalidArgument);
  EXPECT_NE(size.status().message().find(std::to_string(align + 100)), std::string::npos)
      << size.status().message();

  // A pool whose segment size is not aligned fails at its first segment.
  auto pool = ImportedPool::import_host(*dev, m.data, align / 2, 2, /*window=*/1);
  ASSERT_FALSE(pool.ok());
  EXPECT_NE(pool.status().message().find("segment 0"), std::string::npos);
}

// Device memory exported as OPAQUE_FD by this process, filled with a pattern through a
// staging copy: what the daemon's VRAM backend makes (daemon/vk_pool_memory.cpp: a buffer
// with kVramSegmentUsage, a dedicated allocation in opaque_fd_memory_type()).
class ExportedMemory {
 public:
  ExportedMemory(const Device& d) : d_(d) {}
  ~ExportedMemory() {
    if (buffer_) vkDestroyBuffer(d_.device(), buffer_, nullptr);
    if (memory_) vkFreeMemory(d_.device(), memory_, nullptr);
  }
  Status init(uint64_t bytes, uint32_t seed) {
    VkExternalMemoryBufferCreateInfo ext{VK_STRUCTURE_TYPE_EXTERNAL_MEMORY_BUFFER_CREATE_INFO};
    ext.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT;
    VkBufferCreateInfo bci{VK_STRUCTURE_TYPE_BUFFER_CREATE_INFO};
    bci.pNext = &ext;
    bci.size = bytes;
    bci.usage = kVramSegmentUsage;
    VkResult r = vkCreateBuffer(d_.device(), &bci, nullptr, &buffer_);
    if (r != VK_SUCCESS) return vk_error("vkCreateBuffer", r);
    auto type = opaque_fd_memory_type(d_, bytes);
    if (!type.ok()) return type.status();
    VkMemoryRequirements req;
    vkGetBufferMemoryRequirements(d_.device(), buffer_, &req);
    VkMemoryDedicatedAllocateInfo ded{VK_STRUCTURE_TYPE_MEMORY_DEDICATED_ALLOCATE_INFO};
    ded.buffer = buffer_;
    VkExportMemoryAllocateInfo exp{VK_STRUCTURE_TYPE_EXPORT_MEMORY_ALLOCATE_INFO};
    exp.pNext = &ded;
    exp.handleTypes = VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT;
    VkMemoryAllocateInfo ai{VK_STRUCTURE_TYPE_MEMORY_ALLOCATE_INFO};
    ai.pNext = &exp;
    ai.allocationSize = req.size;
    ai.memoryTypeIndex = *type;
    r = vkAllocateMemory(d_.device(), &ai, nullptr, &memory_);
    if (r != VK_SUCCESS) return vk_error("vkAllocateMemory(export)", r);
    r = vkBindBufferMemory(d_.device(), buffer_, memory_, 0);
    if (r != VK_SUCCESS) return vk_error("vkBindBufferMemory", r);
    Readback staging(d_, bytes);
    MOEPOOL_RETURN_IF_ERROR(staging.init(VK_BUFFER_USAGE_TRANSFER_SRC_BIT));
    for (uint64_t i = 0; i < bytes; ++i) staging.data()[i] = pattern(i, seed);
    return gpu_copy(d_, staging.buffer(), 0, buffer_, 0, bytes);
  }
  // A new OPAQUE_FD for the memory (the caller owns it).
  int fd() const {
    VkMemoryGetFdInfoKHR gi{VK_STRUCTURE_TYPE_MEMORY_GET_FD_INFO_KHR};
    gi.memory = memory_;
    gi.handleType = VK_EXTERNAL_MEMORY_HANDLE_TYPE_OPAQUE_FD_BIT;
    int fd = -1;
    if (d_.get_memory_fd(d_.device(), &gi, &fd) != VK_SUCCESS) return -1;
    return fd;
  }

 private:
  const Device& d_;
  VkBuffer buffer_ = VK_NULL_HANDLE;
  VkDeviceMemory memory_ = VK_NULL_HANDLE;
};

TEST(VkMemoryImport, OpaqueFdOfTheSameDeviceIsImportedAndRead) {
  OPEN_DEVICE_OR_SKIP(dev);
  if (!dev->has_external_memory_fd())
    GTEST_SKIP() << dev->name() << " has no VK_KHR_external_memory_fd";
  const uint64_t seg = 256 * 1024;
  ExportedMemory a(*dev), b(*dev);
  ASSERT_TRUE(a.init(seg, 3).ok());
  ASSERT_TRUE(b.init(seg, 4).ok());
  auto pool = ImportedPool::import_fds(*dev, {a.fd(), b.fd()}, seg, dev->uuid());
  ASSERT_TRUE(pool.ok()) << pool.status().to_string();
  ASSERT_EQ((*pool)->segment_count(), 2u);

  Readback rb(*dev, 2 * seg);
  ASSERT_TRUE(rb.init().ok());
  for (uint32_t i = 0; i < 2; ++i)
    ASSERT_TRUE(gpu_copy(*dev, (*pool)->buffers()[i], 0, rb.buffer(), i * seg, seg).ok());
  for (uint64_t i = 0; i < seg; ++i) {
    ASSERT_EQ(rb.data()[i], pattern(i, 3)) << "segment 0 byte " << i;
    ASSERT_EQ(rb.data()[seg + i], pattern(i, 4)) << "segment 1 byte " << i;
  }
}

TEST(VkMemoryImport, SegmentOfAnotherGpuIsRefusedNamingBothUuidsAndItsFdClosed) {
  OPEN_DEVICE_OR_SKIP(dev);
  if (!dev->has_external_memory_fd())
    GTEST_SKIP() << dev->name() << " has no VK_KHR_external_memory_fd";
  ExportedMemory a(*dev);
  ASSERT_TRUE(a.init(64 * 1024, 1).ok());
  DeviceUuid forged = dev->uuid();
  forged[0] ^= 0xff;
  forged[15] ^= 0x5a;
  int fd = a.fd();
  ASSERT_GE(fd, 0);
  auto seg = import_fd_segment(*dev, fd, 64 * 1024, forged, 3);
  ASSERT_FALSE(seg.ok());
  EXPECT_EQ(seg.status().code(), Code::kFailedPrecondition);
  const std::string& msg = seg.status().message();
  EXPECT_NE(msg.find(uuid_string(forged)), std::string::npos) << msg;
  EXPECT_NE(msg.find(uuid_string(dev->uuid())), std::string::npos) << msg;
  EXPECT_NE(msg.find("segment 3"), std::string::npos) << msg;
  // Consumed on failure too: the descriptor is closed (no other thread opens files here).
  EXPECT_EQ(fcntl(fd, F_GETFD), -1);
  EXPECT_EQ(errno, EBADF);

  // The whole pool is refused, every fd closed.
  int f1 = a.fd(), f2 = a.fd();
  auto pool = ImportedPool::import_fds(*dev, {f1, f2}, 64 * 1024, forged);
  ASSERT_FALSE(pool.ok());
  EXPECT_EQ(pool.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(fcntl(f1, F_GETFD), -1);
  EXPECT_EQ(fcntl(f2, F_GETFD), -1);
}

TEST(VkMemoryImport, UuidParsesFromTextOrRawBytes) {
  auto u = parse_uuid("6D657361-3232-2e31-2e37-000000000000");
  ASSERT_TRUE(u.ok()) << u.status().to_string();
  EXPECT_EQ(uuid_string(*u), "6d657361-3232-2e31-2e37-000000000000");
  auto raw = parse_uuid(std::string_view(reinterpret_cast<const char*>(u->data()), 16));
  ASSERT_TRUE(raw.ok());
  EXPECT_EQ(*raw, *u);
  auto bad = parse_uuid("not-a-uuid");
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("not-a-uuid"), std::string::npos);
}

TEST(VkMemoryImport, LeaseLocationSplitsSlotOffsetsBySegment) {
  Lease l;
  l.expert = 9;
  l.slot_index = 5;
  l.stride = 3 * 4096;  // slot at pool offset 61440
  l.projections = {{Projection::kGate, nullptr, 1000, 0},
                   {Projection::kUp, nullptr, 1000, 1024},
                   {Projection::kDown, nullptr, 1000, 2048}};
  auto a = lease_location(l, 16384, 4);  // 61440 = 3 * 16384 + 12288
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->gate.segment, 3u);
  EXPECT_EQ(a->gate.offset, 12288u);
  EXPECT_EQ(a->up.offset, 12288u + 1024);
  EXPECT_EQ(a->down.segment, 3u);
  EXPECT_EQ(a->down.offset, 12288u + 2048);

  // Out of the pool, or past the bytes imported as its segment's buffer, is refused by name.
  auto out = lease_location(l, 16384, 3);
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("expert 9"), std::string::npos);
  l.projections[2].bytes = 5000;  // [14336, 19336): past segment 3's end
  const uint64_t one[] = {16384, 16384, 16384, 16384, 16384};
  const uint64_t two[] = {32768, 32768, 32768, 32768, 16384};
  auto past = lease_location(l, 16384, 5, one);
  ASSERT_FALSE(past.ok());
  EXPECT_NE(past.status().message().find("[14336, +5000)"), std::string::npos)
      << past.status().message();
  // A host pool's window of two segments holds the slot straddling into segment 4.
  EXPECT_TRUE(lease_location(l, 16384, 5, two).ok());

  // Fused gate_up: gate is its first half, up its second.
  l.projections = {{Projection::kGateUp, nullptr, 2000, 0},
                   {Projection::kDown, nullptr, 1000, 2048}};
  auto f = lease_location(l, 16384);
  ASSERT_TRUE(f.ok());
  EXPECT_EQ(f->up.offset, f->gate.offset + 1000);
  l.projections.pop_back();
  EXPECT_FALSE(lease_location(l, 16384).ok());
}

}  // namespace
}  // namespace moepool::vk
