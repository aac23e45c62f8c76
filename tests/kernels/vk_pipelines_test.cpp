// vk::ComputePipeline: builds every embedded MoE module with its specialization constants,
// and names the module when it is missing. Skips without a Vulkan device.
#include "kernels/vk_pipelines.h"

#include <gtest/gtest.h>

#include <string>

#include "kernels/spirv.h"
#include "kernels/vk_device.h"

namespace moepool::vk {
namespace {

TEST(VkPipelines, BuildsTheMoeKernels) {
  auto dev = Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  for (const char* t : {"q4_k", "q8_0", "f16"}) {
    PipelineSpec decode{
        std::string("moe_decode_down_") + t, {4, 1, 1, 1}, 16, {{0, 64}, {1, 4}, {2, 4}, {5, 2}}};
    auto p = ComputePipeline::create(**dev, decode);
    ASSERT_TRUE(p.ok()) << p.status().message();
    EXPECT_NE((*p)->pipeline(), VK_NULL_HANDLE);
    PipelineSpec prefill{std::string("moe_prefill_matmul_") + t,
                         {4, 1, 1, 1, 1},
                         12,
                         {{1, 4}, {2, 32}, {3, 64}, {4, 1}}};
    auto q = ComputePipeline::create(**dev, prefill);
    ASSERT_TRUE(q.ok()) << q.status().message();
  }
  auto r = ComputePipeline::create(**dev, {"moe_prefill_reduce", {1, 1, 1}, 12, {}});
  ASSERT_TRUE(r.ok()) << r.status().message();
}

TEST(VkPipelines, NamesAMissingModule) {
  auto dev = Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  EXPECT_TRUE(kernels::spirv("moe_decode_down_q5_k").empty());
  auto p = ComputePipeline::create(**dev, {"moe_decode_down_q5_k", {1}, 0, {}});
  ASSERT_FALSE(p.ok());
  EXPECT_EQ(p.status().code(), Code::kNotFound);
  EXPECT_NE(p.status().message().find("'moe_decode_down_q5_k'"), std::string::npos)
      << p.status().message();
}

}  // namespace
}  // namespace moepool::vk
