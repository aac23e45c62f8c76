// The SlotWriter seam (daemon/slot_writer.h) and what the VRAM backend builds on: the
// staging allocator, external (VRAM-like) pools whose slots never span two segments, and
// ExpertCache serving a slot only once its writer says the bytes arrived.
#include "daemon/slot_writer.h"

#include <gtest/gtest.h>
#include <sys/mman.h>
#include <unistd.h>

#include <filesystem>
#include <future>

#include "common/gguf_writer.h"
#include "daemon/expert_cache.h"
#include "daemon/pool.h"
#include "daemon/staging_allocator.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

TEST(StagingAllocator, FirstFitRoundsToPagesAndRunsOut) {
  StagingAllocator a(64 << 10);
  EXPECT_EQ(a.capacity(), 64u << 10);
  auto x = a.allocate(1);
  auto y = a.allocate(8192);
  auto z = a.allocate(40 << 10);
  ASSERT_TRUE(x && y && z);
  EXPECT_EQ(*x, 0u);
  EXPECT_EQ(*y, 4096u);
  EXPECT_EQ(*z, 12288u);
  EXPECT_EQ(a.free_bytes(), 12u << 10);
  EXPECT_FALSE(a.allocate(16 << 10));  // 12 KiB left
  EXPECT_FALSE(a.allocate(0));
}

TEST(StagingAllocator, FreedNeighboursCoalesce) {
  StagingAllocator a(16 << 10);
  auto r0 = a.allocate(4096), r1 = a.allocate(4096), r2 = a.allocate(4096), r3 = a.allocate(4096);
  ASSERT_TRUE(r0 && r1 && r2 && r3);
  a.release(*r1, 4096);
  a.release(*r3, 4096);
  EXPECT_FALSE(a.allocate(8192));  // 8 KiB free, but not in one piece
  a.release(*r2, 4096);            // joins r1 and r3
  auto big = a.allocate(12 << 10);
  ASSERT_TRUE(big);
  EXPECT_EQ(*big, 4096u);
  a.release(*big, 12 << 10);
  a.release(*r0, 4096);
  EXPECT_EQ(a.free_bytes(), 16u << 10);
  EXPECT_EQ(a.allocate(16 << 10).value_or(1), 0u);
}

// memfds standing in for exported device memory.
std::vector<int> fake_segments(int n, uint64_t bytes) {
  std::vector<int> fds;
  for (int i = 0; i < n; ++i) {
    int fd = memfd_create("fake-vram", MFD_CLOEXEC);
    EXPECT_GE(fd, 0);
    EXPECT_EQ(ftruncate(fd, static_cast<off_t>(bytes)), 0);
    fds.push_back(fd);
  }
  return fds;
}

TEST(ExternalPool, IsNotMappedAndNoSlotSpansTwoSegments) {
  const uint64_t seg = 64 << 10;
  std::vector<int> fds = fake_segments(3, seg);
  auto pool = Pool::create_external({3 * seg, seg, "off"}, fds, "vulkan", std::string(16, 'u'));
  ASSERT_TRUE(pool.ok()) << pool.status().to_string();
  Pool& p = **pool;
  EXPECT_EQ(p.base(), nullptr);
  EXPECT_EQ(p.backend(), "vulkan");
  EXPECT_EQ(p.device_uuid(), std::string(16, 'u'));
  EXPECT_EQ(p.segment_fds(), fds);
  EXPECT_EQ(p.segment_count(), 3u);
  auto c = p.class_for(24 << 10);  // 2 whole slots per 64 KiB segment, 16 KiB left over
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(p.capacity_slots(*c), 6u);
  int taken = 0;
  while (auto slot = p.take_free_slot(*c)) {
    EXPECT_EQ(p.slot_data(*slot), nullptr);
    uint64_t at = p.slot_offset(*slot);
    EXPECT_EQ(at / seg, (at + p.stride(*c) - 1) / seg) << "slot at " << at << " spans two segments";
    ++taken;
  }
  EXPECT_EQ(taken, 6);
  for (int fd : fds) close(fd);
}

TEST(ExternalPool, RefusesABadGeometry) {
  EXPECT_FALSE(Pool::create_external({0, 4096, "off"}, {}, "vulkan", "").ok());
  std::vector<int> fds = fake_segments(1, 8192);
  EXPECT_FALSE(Pool::create_external({8192, 1000, "off"}, fds, "vulkan", "").ok());
  for (int fd : fds) close(fd);
}

// A SlotWriter that holds every read until the test completes it.
class GateWriter : public SlotWriter {
 public:
  void write(SlotRead read) override {
    std::lock_guard<std::mutex> lock(mu_);
    held_.push_back(std::move(read));
  }
  std::string backend() const override { return "gate"; }
  std::vector<SlotRead> take() {
    std::lock_guard<std::mutex> lock(mu_);
    return std::exchange(held_, {});
  }

 private:
  std::mutex mu_;
  std::vector<SlotRead> held_;
};

class SeamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path("/var/tmp") / ("moepool-seam-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    std::string path = (dir_ / "m.gguf").string();
    GgufWriter w;
    w.add_string("general.architecture", "qwen2moe");
    w.add_string("general.name", "seam-test");
    for (const char* p : {"gate", "up", "down"}) {
      std::vector<uint64_t> ne = {256, 64, 4};
      if (std::string(p) == "down") ne = {64, 256, 4};
      w.add_tensor(std::string("blk.0.ffn_") + p + "_exps.weight", GgmlType::F16, ne,
                   [](uint64_t off, std::span<uint8_t> out) {
                     for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(off + i);
                   });
    }
    ASSERT_TRUE(w.write(path).ok());
    auto pool = Pool::create({1 << 20, 0, "off"});
    ASSERT_TRUE(pool.ok());
    pool_ = std::move(pool).value();
    cache_ = std::make_unique<ExpertCache>(pool_.get(), &writer_);
    model_ = std::make_shared<Model>();
    auto cat = Catalog::open(path);
    ASSERT_TRUE(cat.ok());
    model_->catalog = std::move(cat).value();
    model_->id_ = model_->catalog.model_id();
    auto file = open_model_file(path);
    ASSERT_TRUE(file.ok());
    model_->files.push_back(std::move(file).value());
    ASSERT_TRUE(cache_->prepare_model(model_.get()).ok());
    cache_->add_session(1);
  }
  void TearDown() override {
    cache_.reset();
    fs::remove_all(dir_);
  }
  std::future<Result<std::vector<LeaseInfo>>> acquire(std::vector<uint32_t> experts) {
    auto p = std::make_shared<std::promise<Result<std::vector<LeaseInfo>>>>();
    auto f = p->get_future();
    cache_->acquire(1, model_, 0, std::move(experts),
                    [p](Result<std::vector<LeaseInfo>> r) { p->set_value(std::move(r)); });
    return f;
  }
  const SlotEntry& entry(uint64_t slot) const { return slot_entries(pool_->control())[slot]; }

  fs::path dir_;
  GateWriter writer_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<ExpertCache> cache_;
  std::shared_ptr<Model> model_;
};

TEST_F(SeamTest, SlotIsServedOnlyAfterTheWriterSaysTheBytesArrived) {
  auto f = acquire({1, 2});
  std::vector<SlotRead> reads = writer_.take();
  ASSERT_EQ(reads.size(), 2u);
  // The cache describes the slot, never a host pointer: the writer decides where bytes go.
  for (const SlotRead& r : reads) {
    EXPECT_EQ(r.slot_bytes, model_->layouts[0].stride);
    EXPECT_EQ(r.pool_offset % r.slot_bytes, 0u);
    ASSERT_EQ(r.spans.size(), 3u);
    for (const SlotSpan& s : r.spans) {
      EXPECT_EQ(s.region_offset % kIoAlign, 0u);
      EXPECT_LE(s.region_offset + s.data_at + s.bytes, r.slot_bytes);
    }
  }
  EXPECT_EQ(f.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  const uint64_t slot0 = reads[0].pool_offset / reads[0].slot_bytes;  // class 0 starts at 0
  EXPECT_EQ(entry(slot0).state.load(), kSlotLoading);
  reads[0].done(Status::Ok());
  EXPECT_EQ(entry(slot0).state.load(), kSlotReady);
  EXPECT_EQ(f.wait_for(std::chrono::seconds(0)), std::future_status::timeout);  // one to go
  reads[1].done(Status::Ok());
  auto r = f.get();
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->size(), 2u);
  EXPECT_EQ(cache_->stats().backend, "gate");
}

TEST_F(SeamTest, AWriterErrorFailsTheAcquireAndFreesTheSlot) {
  auto f = acquire({3});
  std::vector<SlotRead> reads = writer_.take();
  ASSERT_EQ(reads.size(), 1u);
  const uint64_t slot = reads[0].pool_offset / reads[0].slot_bytes;
  reads[0].done(Unavailable("copying the expert into VRAM: device lost"));
  auto r = f.get();
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("device lost"), std::string::npos) << r.status().message();
  EXPECT_EQ(entry(slot).state.load(), kSlotFree);
  // Asked again, it is read again.
  auto g = acquire({3});
  reads = writer_.take();
  ASSERT_EQ(reads.size(), 1u);
  reads[0].done(Status::Ok());
  EXPECT_TRUE(g.get().ok());
}

}  // namespace
}  // namespace moepool
