// The MoE kernels end to end on experts served by a real moepoold: a real worker process
// (tests/integration/helpers/kernel_worker.cpp) acquires the routed experts of a synthetic
// model, imports the pool into its Vulkan device, runs decode and every prefill tile on the
// experts in place and checks each against the CPU reference computed from the model file.
// Host pool (VK_EXT_external_memory_host) and VRAM pool (pool.backend = "vulkan",
// VK_KHR_external_memory_fd); Q4_K, Q8_0 and F16 experts; a corrupting daemon as the
// negative control proving the kernels read the pool. Skips without a Vulkan device.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <sstream>

#include "../integration/daemon_harness.h"
#include "common/catalog.h"
#include "kernels/vk_device.h"

namespace moepool::testing {
namespace {

// NMSE the worker checks: F32 accumulation on the GPU vs double in the reference, the
// bound of tests/kernels/moe_gpu_test.cpp (lavapipe measures 1e-14..5e-13 here; an
// indexing bug or a wrong byte gives 1e-3 and more).
constexpr double kBound = 1e-9;
constexpr int kSkip = 77;
// 32 segments of 4 MiB: room for the three models' slot classes at once (the largest,
// F16, needs 16 experts x 1.5 MiB).
const std::string kPool = "128M";
const std::vector<std::string> kSegments = {"--segment-size", "4M"};

struct Nmse {
  std::string what;
  double value;
};

// The "nmse <what...> <value>" lines of the worker's output.
std::vector<Nmse> parse_nmse(const std::string& out) {
  std::vector<Nmse> r;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("nmse ", 0) != 0 || line.rfind("nmse over", 0) == 0) continue;
    size_t sp = line.rfind(' ');
    r.push_back({line.substr(5, sp - 5), std::strtod(line.c_str() + sp + 1, nullptr)});
  }
  return r;
}

// The largest count of routed pairs on one expert the worker reports.
int max_pairs(const std::string& out) {
  size_t at = out.find("max_pairs_per_expert ");
  return at == std::string::npos ? -1 : std::atoi(out.c_str() + at + 21);
}

class KernelsDaemon : public DaemonFixture {
 protected:
  void SetUp() override {
    DaemonFixture::SetUp();
    auto dev = vk::Device::open();
    if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
    has_fd_ = (*dev)->has_external_memory_fd();
    has_int_dot_ = (*dev)->has_int8_decode();
    has_host_ = (*dev)->has_external_memory_host();
  }

  std::string model(const std::string& type) {
    return synth("moe-" + type + ".gguf",
                 {"--arch", "qwen2moe", "--layers", "1", "--experts", "16", "--embd", "512",
                  "--ffn", "256", "--type", type, "--top-k", "4", "--seed", "5"});
  }

  // Runs kernel_worker on layer 0 of `path`; returns {exit code, stdout}.
  std::pair<int, std::string> worker(const std::string& path) {
    char bound[32];
    std::snprintf(bound, sizeof bound, "%g", kBound);  // std::to_string would print 0.000000
    auto r = run({test_bin("kernel_worker"), socket_, path, "0", "--top-k", "4", "--tokens", "160",
                  "--bound", bound});
    std::printf("%s", r.second.c_str());
    return r;
  }

  // Asserts the worker passed with every decode and prefill tile within the bound.
  void expect_within_bound(const std::string& path) {
    auto [rc, out] = worker(path);
    if (rc == kSkip) GTEST_SKIP() << out;
    ASSERT_EQ(rc, 0) << out;
    auto runs = parse_nmse(out);
    // Decode of 1 and 8 tokens (again with int8 activations for the Q4_K model where the
    // device has integer dot products), prefill at tiles 32/64/128.
    const bool int8 = has_int_dot_ && path.find("q4_K") != std::string::npos;
    ASSERT_EQ(runs.size(), int8 ? 7u : 5u) << "decode and prefill runs expected:\n" << out;
    if (int8) {
      EXPECT_NE(out.find("nmse decode int8 tokens 1 "), std::string::npos) << out;
    }
    for (const Nmse& n : runs) EXPECT_LE(n.value, kBound) << path << ": " << n.what;
    for (int tile : {32, 64, 128})
      EXPECT_NE(out.find("prefill tile " + std::to_string(tile) + " "), std::string::npos) << out;
    EXPECT_GT(max_pairs(out), 128) << "every tile width needs > 32 pairs on one expert";
  }

  // moepoold flags for a VRAM pool: a config file with pool.backend = "vulkan".
  std::vector<std::string> vram_flags() {
    std::string path = (dir_ / "vram.toml").string();
    FILE* f = std::fopen(path.c_str(), "w");
    EXPECT_NE(f, nullptr);
    if (f) {
      std::fputs("[pool]\nbackend = \"vulkan\"\n", f);
      std::fclose(f);
    }
    std::vector<std::string> flags = {"--config", path};
    flags.insert(flags.end(), kSegments.begin(), kSegments.end());
    return flags;
  }

  bool has_fd_ = false, has_host_ = false, has_int_dot_ = false;
};

TEST_F(KernelsDaemon, HostPoolEveryTypeAndTileWithinBoundOfTheReference) {
  if (!has_host_) GTEST_SKIP() << "no VK_EXT_external_memory_host";
  std::vector<std::string> paths = {model("q4_K"), model("q8_0"), model("f16")};
  start_daemon(kPool, kSegments);
  for (const auto& p : paths) {
    SCOPED_TRACE(p);
    expect_within_bound(p);
  }
}

TEST_F(KernelsDaemon, VramPoolEveryTypeAndTileWithinBoundOfTheReference) {
  if (!has_fd_) GTEST_SKIP() << "no VK_KHR_external_memory_fd";
  std::vector<std::string> paths = {model("q4_K"), model("q8_0"), model("f16")};
  start_daemon(kPool, vram_flags());
  for (const auto& p : paths) {
    SCOPED_TRACE(p);
    expect_within_bound(p);
  }
}

// The byte inverted by the negative control: the high byte of the F16 scale d of the
// first Q4_K block of expert 0's down projection (every token routes to expert 0; the block
// is row 0 of down, so output element 0 of every token is scaled by -2^9..-2^23 after the
// SiLU, where no saturation can hide it) if, and only if, the kernels read the pool.
uint64_t corrupt_offset(const std::string& path) {
  auto cat = Catalog::open(path);
  EXPECT_TRUE(cat.ok()) << cat.status().to_string();
  if (!cat.ok()) return 0;
  const MoeLayer* layer = cat->layer(0);
  EXPECT_TRUE(layer && layer->projections.size() == 3);
  if (!layer || layer->projections.size() != 3) return 0;
  EXPECT_EQ(layer->projections[2].kind, ProjKind::kDown);
  EXPECT_EQ(layer->projections[2].type, GgmlType::Q4_K);
  return layer->projections[2].expert_extent(0).offset + 1;
}

// Every run (decode in each mode and each prefill tile) must see the inverted byte.
void expect_nmse_check_fails(std::pair<int, std::string> r, bool int8) {
  auto& [rc, out] = r;
  if (rc == kSkip) GTEST_SKIP() << out;
  ASSERT_EQ(rc, 3) << "the worker must see the corrupted byte:\n" << out;
  auto runs = parse_nmse(out);
  ASSERT_EQ(runs.size(), int8 ? 7u : 5u) << out;
  for (const Nmse& n : runs) EXPECT_FALSE(n.value <= kBound) << n.what << " missed it:\n" << out;
}

TEST_F(KernelsDaemon, CorruptedPoolByteFailsTheNmseCheckHostPool) {
  if (!has_host_) GTEST_SKIP() << "no VK_EXT_external_memory_host";
  std::string path = model("q4_K");
  std::vector<std::string> flags = kSegments;
  flags.insert(flags.end(), {"--corrupt-file-offset", std::to_string(corrupt_offset(path))});
  start_daemon(kPool, flags, "moepoold-corrupt");
  expect_nmse_check_fails(worker(path), has_int_dot_);  // a Q4_K model
}

TEST_F(KernelsDaemon, CorruptedPoolByteFailsTheNmseCheckVramPool) {
  if (!has_fd_) GTEST_SKIP() << "no VK_KHR_external_memory_fd";
  std::string path = model("q4_K");
  std::vector<std::string> flags = vram_flags();
  flags.insert(flags.end(), {"--corrupt-file-offset", std::to_string(corrupt_offset(path))});
  start_daemon(kPool, flags, "moepoold-corrupt");
  expect_nmse_check_fails(worker(path), has_int_dot_);  // a Q4_K model
}

}  // namespace
}  // namespace moepool::testing
