// pool.backend and pool.vulkan_device: accepted values, errors with file and line, and a
// "vulkan" pool refused by a moepoold built without Vulkan.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>

#include "daemon/config.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

class ConfigVramTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "moepool-config-vram-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  Result<DaemonConfig> load(const std::string& text) {
    std::string p = (dir_ / "c.toml").string();
    std::ofstream(p) << text;
    return load_config_file(p, default_config());
  }
  fs::path dir_;
};

TEST_F(ConfigVramTest, DefaultsAreHostAndAnyDevice) {
  DaemonConfig c = default_config();
  EXPECT_EQ(c.pool_backend, "host");
  EXPECT_EQ(c.vulkan_device, -1);
  auto r = load("[pool]\nbackend = \"host\"\nvulkan_device = 2\n");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->pool_backend, "host");
  EXPECT_EQ(r->vulkan_device, 2);
}

TEST_F(ConfigVramTest, VulkanIsAcceptedOnlyWhereBuiltWithVulkan) {
  auto r = load("[pool]\nbackend = \"vulkan\"\n");
  if (have_vulkan_backend()) {
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ(r->pool_backend, "vulkan");
  } else {
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find("c.toml:2:"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("built without Vulkan"), std::string::npos);
  }
}

TEST_F(ConfigVramTest, BadValuesNameFileLineAndKey) {
  auto r = load("[pool]\nbackend = \"cuda\"\n");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("c.toml:2:"), std::string::npos) << r.status().message();
  EXPECT_NE(r.status().message().find("pool.backend"), std::string::npos);
  for (const char* bad : {"vulkan_device = -2", "vulkan_device = 64", "vulkan_device = \"0\"",
                          "vulkan_device = 1.5"}) {
    r = load(std::string("[pool]\n") + bad + "\n");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.status().message().find("c.toml:2:"), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find("pool.vulkan_device"), std::string::npos);
  }
}

TEST_F(ConfigVramTest, ValidateRefusesWhatFlagsCouldSmuggleIn) {
  DaemonConfig c = default_config();
  c.pool_backend = "cuda";
  Status st = validate_config(&c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("pool.backend"), std::string::npos);
  c = default_config();
  c.vulkan_device = -5;
  st = validate_config(&c);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("pool.vulkan_device"), std::string::npos);
}

TEST_F(ConfigVramTest, DescribeShowsTheBackend) {
  std::string d = describe_config(default_config());
  EXPECT_NE(d.find("pool.backend:       host"), std::string::npos) << d;
}

}  // namespace
}  // namespace moepool
