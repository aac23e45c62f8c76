// GpuReadCeiling (kernels/gpu_read_ceiling.h) on lavapipe: the streaming read covers every
// byte of ranges at odd 16-byte offsets in three buffers (one range shorter than a chunk,
// one spanning several chunks and a partial last chunk) exactly once, as the XOR of what it
// read equals the CPU's; bad ranges are refused naming the range and field. Skips without a
// Vulkan device.
#include "kernels/gpu_read_ceiling.h"

#include <gtest/gtest.h>

#include <cstring>
#include <memory>
#include <random>
#include <vector>

#include "kernels/vk_buffer.h"
#include "kernels/vk_device.h"

namespace moepool::kernels {
namespace {

struct Segments {
  std::vector<std::unique_ptr<vk::Buffer>> buffers;
  std::vector<std::vector<uint8_t>> bytes;  // the CPU copy
  std::vector<VkBuffer> handles;
  std::vector<uint64_t> sizes;
};

// Three device-local buffers of random bytes.
Segments make_segments(const vk::Device& dev, std::initializer_list<uint64_t> sizes) {
  Segments s;
  std::mt19937 rng(1234);
  for (uint64_t n : sizes) {
    auto b = vk::Buffer::create(dev, n, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT,
                                vk::MemoryKind::kDeviceLocal);
    EXPECT_TRUE(b.ok()) << b.status().message();
    if (!b.ok()) return s;
    std::vector<uint8_t> data(n);
    for (auto& v : data) v = static_cast<uint8_t>(rng());
    EXPECT_TRUE(vk::upload(dev, **b, 0, data.data(), n).ok());
    s.handles.push_back((*b)->handle());
    s.sizes.push_back(n);
    s.buffers.push_back(std::move(*b));
    s.bytes.push_back(std::move(data));
  }
  return s;
}

uint32_t cpu_xor(const Segments& s, std::span<const ReadRange> ranges) {
  uint32_t x = 0;
  for (const ReadRange& r : ranges) {
    for (uint64_t b = r.offset; b < r.offset + r.bytes; b += 4) {
      uint32_t w;
      std::memcpy(&w, s.bytes[r.segment].data() + b, 4);
      x ^= w;
    }
  }
  return x;
}

TEST(GpuReadCeiling, ReadsEveryByteOfEveryRangeOnce) {
  auto dev = vk::Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  // Chunks of 1 KiB with 32 threads x 2 loads: a step covers 1 KiB, so ranges exercise the
  // unrolled loop, the tail loop, and chunks shorter than a step.
  ReadCeilingOptions opt;
  opt.workgroup = 32;
  opt.chunk_bytes = 1024;
  opt.unroll = 2;
  auto ceiling = GpuReadCeiling::create(**dev, opt);
  if (!ceiling.ok() && ceiling.status().code() == Code::kUnavailable)
    GTEST_SKIP() << ceiling.status().message();
  ASSERT_TRUE(ceiling.ok()) << ceiling.status().message();
  Segments s = make_segments(**dev, {64 * 1024, 20000, 8192});
  ASSERT_EQ(s.handles.size(), 3u);
  ASSERT_TRUE((*ceiling)->bind_segments(s.handles, s.sizes).ok());

  const std::vector<ReadRange> ranges = {
      {1, 16 * 3, 16 * 5},          // smaller than one chunk
      {0, 16 * 7, 16 * 1001},       // 15 full chunks and a partial one
      {2, 16 * 11, 16 * 64},        // exactly one chunk
      {1, 20000 - 16 * 9, 16 * 9},  // ends at the buffer's end
      {0, 16 * 2001, 16 * 1},       // one 16-byte load
  };
  auto run = (*ceiling)->run(ranges);
  ASSERT_TRUE(run.ok()) << run.status().message();
  EXPECT_EQ(run->xor_value, cpu_xor(s, ranges));
  uint64_t bytes = 0;
  for (const ReadRange& r : ranges) bytes += r.bytes;
  EXPECT_EQ(run->bytes, bytes);
  EXPECT_EQ(run->workgroups, 1u + 16u + 1u + 1u + 1u);
  EXPECT_GT(run->seconds, 0);

  // Each range alone, so a byte read twice or skipped cannot cancel out across ranges.
  for (const ReadRange& r : ranges) {
    auto one = (*ceiling)->run({&r, 1});
    ASSERT_TRUE(one.ok()) << one.status().message();
    EXPECT_EQ(one->xor_value, cpu_xor(s, {&r, 1}))
        << "segment " << r.segment << " offset " << r.offset << " bytes " << r.bytes;
  }
}

TEST(GpuReadCeiling, DefaultLaunchShapeReadsTheSameBytes) {
  auto dev = vk::Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  auto ceiling = GpuReadCeiling::create(**dev);  // 256 threads, 64 KiB chunks
  if (!ceiling.ok() && ceiling.status().code() == Code::kUnavailable)
    GTEST_SKIP() << ceiling.status().message();
  ASSERT_TRUE(ceiling.ok()) << ceiling.status().message();
  Segments s = make_segments(**dev, {300 * 1024, 4096});
  ASSERT_EQ(s.handles.size(), 2u);
  ASSERT_TRUE((*ceiling)->bind_segments(s.handles, s.sizes).ok());
  const std::vector<ReadRange> ranges = {{0, 16 * 13, 16 * 17000}, {1, 16, 4096 - 32}};
  auto run = (*ceiling)->run(ranges);
  ASSERT_TRUE(run.ok()) << run.status().message();
  EXPECT_EQ(run->xor_value, cpu_xor(s, ranges));
  EXPECT_EQ(run->workgroups, 5u + 1u);
}

TEST(GpuReadCeiling, RefusesBadRangesNamingThem) {
  auto dev = vk::Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  auto ceiling = GpuReadCeiling::create(**dev);
  if (!ceiling.ok() && ceiling.status().code() == Code::kUnavailable)
    GTEST_SKIP() << ceiling.status().message();
  ASSERT_TRUE(ceiling.ok()) << ceiling.status().message();
  Segments s = make_segments(**dev, {4096, 1024});
  ASSERT_EQ(s.handles.size(), 2u);
  EXPECT_EQ((*ceiling)->run(std::vector<ReadRange>{{0, 0, 16}}).status().code(),
            Code::kFailedPrecondition);  // nothing bound yet
  ASSERT_TRUE((*ceiling)->bind_segments(s.handles, s.sizes).ok());

  struct Case {
    ReadRange bad;
    const char* want;
  };
  const Case cases[] = {
      {{1, 1024 - 16, 32}, "ranges[1]: bytes [1008, 1040) reach past segment 1's 1024 bytes"},
      {{0, 8, 16}, "ranges[1].offset = 8 is not a multiple of 16"},
      {{0, 16, 24}, "ranges[1].bytes = 24 is not a positive multiple of 16"},
      {{0, 16, 0}, "ranges[1].bytes = 0"},
      {{2, 0, 16}, "ranges[1].segment = 2 but 2 segments are bound"},
  };
  for (const Case& c : cases) {
    const std::vector<ReadRange> ranges = {{0, 0, 64}, c.bad};
    auto run = (*ceiling)->run(ranges);
    ASSERT_FALSE(run.ok()) << c.want;
    EXPECT_EQ(run.status().code(), Code::kInvalidArgument);
    EXPECT_NE(run.status().message().find(c.want), std::string::npos) << run.status().message();
  }
  EXPECT_FALSE((*ceiling)->run({}).ok());

  ReadCeilingOptions odd;
  odd.chunk_bytes = 1000;
  auto bad = GpuReadCeiling::create(**dev, odd);
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("chunk_bytes = 1000"), std::string::npos)
      << bad.status().message();
}

}  // namespace
}  // namespace moepool::kernels
