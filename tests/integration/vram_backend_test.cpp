// The VRAM pool backend end to end (pool.backend = "vulkan", on lavapipe in CI): a real
// moepoold exports its segments, real worker processes (helpers/vram_worker.cpp) import
// them with plain Vulkan and check every acquired expert's bytes against the model file,
// through misses that evict others; the client never maps VRAM; bad configs are refused.
#include <cstdlib>
#include <fstream>

#include "moepool/moepool.h"
#include "tests/integration/daemon_harness.h"

#ifdef MOEPOOL_DAEMON_HAVE_VULKAN
#include "kernels/vk_device.h"
#endif

namespace moepool::testing {
namespace {

// Why this machine cannot run a VRAM pool ("" when it can).
std::string no_vram_reason() {
#ifdef MOEPOOL_DAEMON_HAVE_VULKAN
  vk::DeviceOptions o;
  o.require_external_memory_fd = true;
  auto d = vk::Device::open(o);
  return d.ok() ? "" : "no Vulkan device with VK_KHR_external_memory_fd: " + d.status().message();
#else
  return "moepoold was built without Vulkan (MOEPOOL_WITH_VULKAN)";
#endif
}

class VramFixture : public DaemonFixture {
 protected:
  // Writes a config file with `pool_lines` in [pool]; returns its path.
  std::string config(const std::string& pool_lines) {
    std::string path = (dir_ / "moepoold.toml").string();
    std::ofstream(path) << "[pool]\n" << pool_lines << "\n";
    return path;
  }
  void start_vram_daemon() {
    start_daemon("8M", {"--config", config("backend = \"vulkan\"\nsegment_size = \"2M\"")});
  }
  // moepoold's exit status and output (stdout + stderr) for a start that must fail.
  std::pair<int, std::string> refused_start(const std::string& cfg, const std::string& pool) {
    std::string cmd = bin("moepoold") + " --config " + cfg + " --socket " + socket_ +
                      " --pool-size " + pool + " --model-root " + models() + " --state-dir " +
                      (dir_ / "state").string() + " 2>&1";
    return run({"/bin/sh", "-c", cmd});
  }
};

// 4 layers x 16 experts of q8_0, embd 256, ffn 512: 3 x 139264 bytes per expert (4 KiB
// multiples: O_DIRECT lands them in place), 4 slots per 2 MiB segment, 16 in the pool.
std::vector<std::string> aligned_model() {
  return {"--layers", "4", "--experts", "16", "--embd", "256", "--ffn", "512", "--type", "q8_0"};
}
// f16, embd 64, ffn 40: 5120-byte projections, so experts sit at different offsets within
// 4 KiB and the I/O engine moves them inside the staging region.
std::vector<std::string> misaligned_model() {
  return {"--layers", "2", "--experts", "32", "--embd", "64", "--ffn", "40", "--type", "f16"};
}

TEST_F(VramFixture, WorkersImportSegmentsAndSeeFileBytesThroughEvictions) {
  if (auto why = no_vram_reason(); !why.empty()) GTEST_SKIP() << why;
  std::string a = synth("a.gguf", aligned_model());
  std::string b = synth("b.gguf", misaligned_model());
  start_vram_daemon();
  // 8 experts per acquire, 16 slots: every third acquire evicts, and earlier experts come
  // back into other slots.
  std::vector<std::string> specs = {"0:0,1,2,3,4,5,6,7",  "1:0,1,2,3,4,5,6,7",
                                    "2:8,9,10,11,12,13,14,15", "3:0,1,2,3,4,5,6,7",
                                    "0:8,9,10,11,12,13,14,15", "0:0,1,2,3,4,5,6,7",
                                    "1:3,4,5,6,7,8,9,10"};
  std::vector<std::string> argv_a = {test_bin("vram_worker"), socket_, a};
  argv_a.insert(argv_a.end(), specs.begin(), specs.end());
  std::vector<std::string> argv_b = {test_bin("vram_worker"), socket_, b,
                                     "0:0,5,9,17,31", "1:1,2,3,30", "0:4,6,8,10,12,14,16,18"};
  // One worker alone, then two at once (4 pins each leave room for reads in flight), then
  // one on the misaligned model.
  auto [rc_a, out_a] = run(argv_a);
  EXPECT_EQ(rc_a, 0) << out_a;
  EXPECT_EQ(out_a, "ok " + std::to_string(specs.size() * 8 * 3) + "\n");
  std::vector<std::string> argv_c = {test_bin("vram_worker"), socket_, a, "2:0,1,2,3",
                                     "3:12,13,14,15", "0:5,9,10,11", "1:0,2,4,6"};
  Process w1(argv_c), w2(argv_c);
  std::string out1 = w1.read_all(), out2 = w2.read_all();
  EXPECT_EQ(w1.wait(), 0) << out1;
  EXPECT_EQ(w2.wait(), 0) << out2;
  EXPECT_EQ(out1, "ok " + std::to_string(4 * 4 * 3) + "\n");
  auto [rc, out_b] = run(argv_b);
  EXPECT_EQ(rc, 0) << out_b;
  EXPECT_EQ(out_b, "ok " + std::to_string(17 * 3) + "\n");

  auto c = connect();
  ASSERT_NE(c, nullptr);
  auto st = c->stats();
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  EXPECT_EQ(st->pool_backend, "vulkan");
  EXPECT_GT(st->evictions, 0u);
  // Every demand read was copied before its acquire returned; prefetches may still be loading.
  EXPECT_GE(st->upload_copies, st->misses);
  EXPECT_LE(st->upload_copies, st->misses + st->prefetches);
  EXPECT_GT(st->upload_bytes, 0u);
  EXPECT_GT(st->upload_busy_ns, 0u);
  EXPECT_EQ(st->read_errors, 0u);
}

// Negative control: the worker's check must notice a wrong byte that reached VRAM.
TEST_F(VramFixture, WorkerNoticesACorruptedByteInVram) {
  if (auto why = no_vram_reason(); !why.empty()) GTEST_SKIP() << why;
  std::string a = synth("a.gguf", aligned_model());
  char* file = nullptr;
  char* err = nullptr;
  uint64_t offset = 0, bytes = 0;
  ASSERT_EQ(moepool_debug_expert_extent(a.c_str(), 1, 5, 2, &file, &offset, &bytes, &err), 0)
      << (err ? err : "");
  moepool_free(file);
  start_daemon("8M",
               {"--config", config("backend = \"vulkan\"\nsegment_size = \"2M\""),
                "--corrupt-file-offset", std::to_string(offset + bytes / 2)},
               "moepoold-corrupt");
  auto [rc, out] = run({test_bin("vram_worker"), socket_, a, "1:4,5,6"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("layer 1 expert 5 projection 2 differs from the file at byte " +
                     std::to_string(bytes / 2)),
            std::string::npos)
      << out;
}

TEST_F(VramFixture, ClientNeverMapsVramButHandsOutSegmentFds) {
  if (auto why = no_vram_reason(); !why.empty()) GTEST_SKIP() << why;
  std::string a = synth("a.gguf", aligned_model());
  start_vram_daemon();
  auto c = connect();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->pool_backend(), "vulkan");
  EXPECT_EQ(c->pool_base(), nullptr);
  EXPECT_EQ(c->segment_bytes(), 2u << 20);
  EXPECT_EQ(c->segment_count(), 4u);
  std::array<uint8_t, 16> zero{};
  EXPECT_NE(c->device_uuid(), zero);
  auto fds = c->dup_segment_fds();
  ASSERT_TRUE(fds.ok()) << fds.status().to_string();
  EXPECT_EQ(fds->size(), 4u);
  for (int fd : *fds) close(fd);
  auto m = c->open_model(a);
  ASSERT_TRUE(m.ok()) << m.status().to_string();
  std::vector<uint32_t> experts = {3, 7};
  auto leases = c->acquire(m->id, 1, experts);
  ASSERT_TRUE(leases.ok()) << leases.status().to_string();
  for (const Lease& l : *leases) {
    EXPECT_EQ(l.slot, nullptr);
    EXPECT_GT(l.stride, 0u);
    EXPECT_LE(l.slot_index * l.stride % c->segment_bytes() + l.stride, c->segment_bytes());
    ASSERT_EQ(l.projections.size(), 3u);
    for (const ProjectionView& p : l.projections) {
      EXPECT_EQ(p.data, nullptr);
      EXPECT_LE(p.offset_in_slot + p.bytes, l.stride);
    }
  }
  EXPECT_TRUE(c->release(*leases).ok());
}

TEST_F(VramFixture, HostPoolHasNoSegmentFdsToHandOut) {
  start_daemon("16M");
  auto c = connect();
  ASSERT_NE(c, nullptr);
  EXPECT_EQ(c->pool_backend(), "host");
  EXPECT_NE(c->pool_base(), nullptr);
  auto fds = c->dup_segment_fds();
  ASSERT_FALSE(fds.ok());
  EXPECT_EQ(fds.status().code(), Code::kFailedPrecondition);
  auto st = c->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->pool_backend, "host");
  EXPECT_EQ(st->upload_copies, 0u);
}

TEST_F(VramFixture, BadBackendConfigIsRefusedWithFileAndLine) {
  auto [rc, out] = refused_start(config("backend = \"cuda\""), "16M");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("moepoold.toml:2:"), std::string::npos) << out;
  EXPECT_NE(out.find("pool.backend"), std::string::npos) << out;
  std::tie(rc, out) = refused_start(config("vulkan_device = 99"), "16M");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("pool.vulkan_device: 99 is out of range"), std::string::npos) << out;
  std::tie(rc, out) = refused_start(config("vulkan_device = \"gpu0\""), "16M");
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("pool.vulkan_device"), std::string::npos) << out;
}

TEST_F(VramFixture, SegmentLargerThanTheDeviceAllowsIsRefused) {
  if (auto why = no_vram_reason(); !why.empty()) GTEST_SKIP() << why;
#ifdef MOEPOOL_DAEMON_HAVE_VULKAN
  vk::DeviceOptions o;
  o.require_external_memory_fd = true;
  auto d = vk::Device::open(o);
  ASSERT_TRUE(d.ok());
  const uint64_t limit = std::min<uint64_t>((*d)->limits().maxStorageBufferRange,
                                            (*d)->max_allocation_bytes());
  const uint64_t seg = (limit / 4096 + 1) * 4096;  // one page past the limit
  if (seg > (64ull << 30)) GTEST_SKIP() << "the device's limit is too large to exceed in a test";
  auto [rc, out] = refused_start(
      config("backend = \"vulkan\"\nsegment_size = " + std::to_string(seg)), std::to_string(seg));
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("exceeds"), std::string::npos) << out;
  EXPECT_NE(out.find("pool.segment_size"), std::string::npos) << out;
#endif
}

}  // namespace
}  // namespace moepool::testing
