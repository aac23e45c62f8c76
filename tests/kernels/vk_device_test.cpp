// The Vulkan device moepool opens (kernels/vk_device.h) on whatever this machine has:
// Mesa's lavapipe in CI. Skips with the reason where no Vulkan device exists.
#include "kernels/vk_device.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>

#include "kernels/spirv.h"

namespace moepool::vk {
namespace {

TEST(VkDevice, OpensAndReportsWhatTheKernelsCheck) {
  auto dev = Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  const Device& d = **dev;
  // What the kernels run on, in the test log (CI: lavapipe).
  std::printf("device %s | driver %s | uuid %s | subgroup %u | max allocation %llu | "
              "max storage buffer range %u | external memory fd %d host %d (align %llu) | "
              "transfer family %u compute family %u | timestamp period %.3f ns\n",
              d.name().c_str(), d.driver().c_str(), uuid_string(d.uuid()).c_str(),
              d.subgroup_size(), static_cast<unsigned long long>(d.max_allocation_bytes()),
              d.limits().maxStorageBufferRange, d.has_external_memory_fd(),
              d.has_external_memory_host(),
              static_cast<unsigned long long>(d.host_import_alignment()), d.transfer_family(),
              d.compute_family(), d.timestamp_period_ns());
  EXPECT_FALSE(d.name().empty());
  EXPECT_FALSE(d.driver().empty());
  EXPECT_GT(d.subgroup_size(), 0u);
  EXPECT_GT(d.max_allocation_bytes(), 0u);
  EXPECT_NE(d.compute_queue(), VK_NULL_HANDLE);
  EXPECT_NE(d.transfer_queue(), VK_NULL_HANDLE);
  DeviceUuid zero{};
  EXPECT_NE(d.uuid(), zero) << "deviceUUID is what a VRAM import is checked against";
  EXPECT_EQ(uuid_string(d.uuid()).size(), 36u);
  if (d.has_external_memory_host()) {
    EXPECT_GT(d.host_import_alignment(), 0u);
    EXPECT_NE(d.get_memory_host_pointer_properties, nullptr);
  }
  if (d.has_external_memory_fd()) {
    EXPECT_NE(d.get_memory_fd, nullptr);
  }
  auto host = d.find_memory_type(~0u, VK_MEMORY_PROPERTY_HOST_VISIBLE_BIT |
                                          VK_MEMORY_PROPERTY_HOST_COHERENT_BIT);
  EXPECT_TRUE(host.ok()) << host.status().message();
}

TEST(VkDevice, AnIndexPastTheLastDeviceIsRefusedByName) {
  auto dev = Device::open({.index = 1000});
  if (!dev.ok() && dev.status().code() == Code::kUnavailable)
    GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  ASSERT_FALSE(dev.ok());
  EXPECT_EQ(dev.status().code(), Code::kInvalidArgument);
  EXPECT_NE(dev.status().message().find("1000"), std::string::npos) << dev.status().message();
}

TEST(VkDevice, NoMemoryTypeIsNotFound) {
  auto dev = Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  auto t = (*dev)->find_memory_type(0, 0);
  EXPECT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kNotFound);
}

TEST(Spirv, UnknownModuleIsEmptyAndEveryEmbeddedModuleIsSpirv) {
  EXPECT_TRUE(kernels::spirv("no_such_shader").empty());
  for (std::string_view name : kernels::spirv_names()) {
    auto words = kernels::spirv(name);
    ASSERT_GE(words.size(), 5u) << name;
    EXPECT_EQ(words[0], 0x07230203u) << name << " does not start with the SPIR-V magic";
  }
}

}  // namespace
}  // namespace moepool::vk
