// vk::Buffer and upload()/download(): bytes round-trip through device-local and host-visible
// buffers at offsets, and ranges outside a buffer are refused. Skips without a Vulkan device.
#include "kernels/vk_buffer.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <numeric>
#include <vector>

#include "kernels/vk_device.h"

namespace moepool::vk {
namespace {

TEST(VkBuffer, RoundTripsBytesAtOffsets) {
  auto dev = Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  for (MemoryKind kind : {MemoryKind::kDeviceLocal, MemoryKind::kHostVisible}) {
    auto b = Buffer::create(**dev, 4096, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, kind);
    ASSERT_TRUE(b.ok()) << b.status().message();
    EXPECT_EQ((*b)->bytes(), 4096u);
    EXPECT_EQ((*b)->mapped() != nullptr, kind == MemoryKind::kHostVisible);
    std::vector<uint8_t> in(1000);
    std::iota(in.begin(), in.end(), uint8_t{7});
    ASSERT_TRUE(upload(**dev, **b, 3000, in.data(), in.size()).ok());
    std::vector<uint8_t> out(1000, 0);
    ASSERT_TRUE(download(**dev, **b, 3000, out.data(), out.size()).ok());
    EXPECT_EQ(in, out);
  }
}

TEST(VkBuffer, RefusesRangesOutsideTheBuffer) {
  auto dev = Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  auto b = Buffer::create(**dev, 256, VK_BUFFER_USAGE_STORAGE_BUFFER_BIT, MemoryKind::kDeviceLocal);
  ASSERT_TRUE(b.ok()) << b.status().message();
  std::vector<uint8_t> data(64);
  Status st = upload(**dev, **b, 200, data.data(), data.size());
  EXPECT_EQ(st.code(), Code::kInvalidArgument);
  EXPECT_NE(st.message().find("outside the 256-byte buffer"), std::string::npos) << st.message();
  EXPECT_FALSE(download(**dev, **b, 257, data.data(), 0).ok());
  EXPECT_FALSE(Buffer::create(**dev, 0, 0, MemoryKind::kHostVisible).ok());
}

}  // namespace
}  // namespace moepool::vk
