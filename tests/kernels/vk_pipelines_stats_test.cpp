// vk::ComputePipeline's MOEPOOL_VK_PIPELINE_STATS diagnostic: with the variable set on a
// device with VK_KHR_pipeline_executable_properties, statistics() holds one line per
// executable naming the module; without it (or with "0", or on a device without the
// extension) the pipeline is built as usual and statistics() is empty. Skips without a
// Vulkan device.
#include <gtest/gtest.h>

#include <cstdlib>
#include <optional>
#include <string>

#include "kernels/vk_device.h"
#include "kernels/vk_pipelines.h"

namespace moepool::vk {
namespace {

constexpr char kVar[] = "MOEPOOL_VK_PIPELINE_STATS";

// Sets (or, for nullptr, unsets) the variable for its lifetime and restores it after.
class ScopedEnv {
 public:
  explicit ScopedEnv(const char* value) {
    if (const char* old = std::getenv(kVar)) old_ = old;
    if (value)
      setenv(kVar, value, 1);
    else
      unsetenv(kVar);
  }
  ~ScopedEnv() {
    if (old_)
      setenv(kVar, old_->c_str(), 1);
    else
      unsetenv(kVar);
  }

 private:
  std::optional<std::string> old_;
};

// The prefill reduce kernel, as kernels/moe_gpu.cpp builds it (push constants: ReducePush).
const PipelineSpec kReduce{"moe_prefill_reduce", {1, 1, 1}, 12, {}};

TEST(VkPipelineStats, CapturedWhenAsked) {
  auto dev = Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  if (!(*dev)->has_pipeline_statistics()) {
    GTEST_SKIP() << (*dev)->name()
                 << " lacks VK_KHR_pipeline_executable_properties (pipelineExecutableInfo)";
  }
  ScopedEnv env("1");
  for (const PipelineSpec& spec :
       {kReduce, PipelineSpec{"moe_decode_down_q4_k", {4, 1, 1, 1}, 16, {{0, 64}, {1, 4}}}}) {
    auto p = ComputePipeline::create(**dev, spec);
    ASSERT_TRUE(p.ok()) << p.status().message();
    const std::vector<std::string> lines = (*p)->statistics();
    ASSERT_FALSE(lines.empty()) << spec.module;
    for (const std::string& line : lines) {
      EXPECT_EQ(line.rfind("pipeline " + spec.module + " [", 0), 0u) << line;
      EXPECT_NE(line.find(": "), std::string::npos) << line;
      EXPECT_NE(line.find('='), std::string::npos) << line;
    }
    if (!spec.spec_constants.empty()) {
      EXPECT_NE(lines[0].find("[0=64 1=4]"), std::string::npos) << lines[0];
    }
  }
}

TEST(VkPipelineStats, EmptyWithoutTheVariable) {
  auto dev = Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  for (const char* value : {static_cast<const char*>(nullptr), "", "0"}) {
    ScopedEnv env(value);
    auto p = ComputePipeline::create(**dev, kReduce);
    ASSERT_TRUE(p.ok()) << p.status().message();
    EXPECT_NE((*p)->pipeline(), VK_NULL_HANDLE);
    EXPECT_TRUE((*p)->statistics().empty()) << (value ? value : "(unset)");
  }
}

// On a device without the extension the variable changes nothing but a warning.
TEST(VkPipelineStats, DeviceWithoutTheExtensionStillBuilds) {
  auto dev = Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  if ((*dev)->has_pipeline_statistics())
    GTEST_SKIP() << (*dev)->name() << " has VK_KHR_pipeline_executable_properties";
  ScopedEnv env("1");
  auto p = ComputePipeline::create(**dev, kReduce);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_NE((*p)->pipeline(), VK_NULL_HANDLE);
  EXPECT_TRUE((*p)->statistics().empty());
}

}  // namespace
}  // namespace moepool::vk
