// The ExpertCache on one budget shared by several models: lending an idle model's share,
// reclaiming it, minimums, maximums (pinned bytes included), and segments moving between
// slot classes by measured benefit — real GGUF files, a real pool and a real I/O engine.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>

#include "common/gguf_writer.h"
#include "daemon/expert_cache.h"
#include "daemon/pread_backend.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

class SharedBudgetTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path("/var/tmp") / ("moepool-budget-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
  }
  void TearDown() override {
    if (engine_) engine_->stop();
    cache_.reset();
    fs::remove_all(dir_);
  }

  // A qwen2moe GGUF called `name` with `layers` MoE layers of `experts` f16 experts whose
  // projections are [cols, 64] (cols 256: 32 KiB each).
  std::string write_model(const std::string& name, uint32_t layers, uint32_t experts,
                          std::vector<uint64_t> cols) {
    std::string path = (dir_ / (name + ".gguf")).string();
    GgufWriter w;
    w.add_string("general.architecture", "qwen2moe");
    w.add_string("general.name", name);
    for (uint32_t l = 0; l < layers; ++l)
      for (const char* p : {"gate", "up", "down"}) {
        uint64_t c = cols[l % cols.size()];
        std::vector<uint64_t> ne = {c, 64, experts};
        if (std::string(p) == "down") ne = {64, c, experts};
        w.add_tensor("blk." + std::to_string(l) + ".ffn_" + p + "_exps.weight", GgmlType::F16, ne,
                     [](uint64_t off, std::span<uint8_t> out) {
                       for (size_t i = 0; i < out.size(); ++i) out[i] = uint8_t(off + i);
                     });
      }
    EXPECT_TRUE(w.write(path).ok());
    return path;
  }

  void start(uint64_t pool_bytes, uint64_t segment_bytes = 0) {
    auto pool = Pool::create({pool_bytes, segment_bytes, "off"});
    ASSERT_TRUE(pool.ok()) << pool.status().to_string();
    pool_ = std::move(pool).value();
    auto backend = PreadBackend::create(2, 16);
    ASSERT_TRUE(backend.ok());
    auto engine = IoEngine::create({}, std::move(backend).value());
    ASSERT_TRUE(engine.ok());
    engine_ = std::move(engine).value();
    cache_ = std::make_unique<ExpertCache>(pool_.get(), engine_.get());
  }

  std::shared_ptr<Model> open(const std::string& path) {
    auto m = std::make_shared<Model>();
    auto cat = Catalog::open(path);
    EXPECT_TRUE(cat.ok()) << cat.status().to_string();
    m->catalog = std::move(cat).value();
    m->id_ = m->catalog.model_id();
    auto file = open_model_file(path);
    EXPECT_TRUE(file.ok());
    m->files.push_back(std::move(file).value());
    EXPECT_TRUE(cache_->prepare_model(m.get()).ok());
    return m;
  }

  Result<std::vector<LeaseInfo>> acquire(const std::shared_ptr<Model>& m, uint32_t layer,
                                         std::vector<uint32_t> experts, uint64_t session = 1) {
    std::promise<Result<std::vector<LeaseInfo>>> p;
    auto f = p.get_future();
    cache_->acquire(session, m, layer, std::move(experts),
                    [&p](Result<std::vector<LeaseInfo>> r) { p.set_value(std::move(r)); });
    return f.get();
  }

  // Acquires and releases each of `experts` of `layer` in turn, `rounds` times; returns
  // the hits.
  uint64_t sweep(const std::shared_ptr<Model>& m, uint32_t layer, uint32_t first, uint32_t n,
                 int rounds = 1) {
    uint64_t hits = 0;
    for (int r = 0; r < rounds; ++r)
      for (uint32_t e = first; e < first + n; ++e) {
        auto got = acquire(m, layer, {e});
        EXPECT_TRUE(got.ok()) << got.status().to_string();
        if (!got.ok()) return hits;
        hits += (*got)[0].hit;
        EXPECT_TRUE(cache_->release(1, {{(*got)[0].slot_id, (*got)[0].generation}}).ok());
      }
    return hits;
  }

  uint64_t used(const std::shared_ptr<Model>& m) { return cache_->model_counters(*m).used_bytes; }

  fs::path dir_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<IoEngine> engine_;
  std::unique_ptr<ExpertCache> cache_;
};

TEST_F(SharedBudgetTest, AnIdleModelsShareIsLentAndReclaimedWhenItComesBack) {
  start(4 << 20);  // 4 MiB: 42 slots of 96 KiB
  auto a = open(write_model("model-a", 1, 128, {256}));
  auto b = open(write_model("model-b", 1, 128, {256}));
  cache_->add_session(1);
  const uint64_t stride = a->layouts[0].stride;
  const uint64_t slots = pool_->capacity_slots(a->layouts[0].slot_class);
  // a alone: it borrows the whole pool.
  sweep(a, 0, 0, 128);
  EXPECT_EQ(used(a), slots * stride);
  // b comes: it takes memory back from a until both hold half (weights 1:1), then pays
  // with its own experts.
  sweep(b, 0, 0, 128);
  sweep(a, 0, 0, 8);  // a stays active
  sweep(b, 0, 0, 128);
  EXPECT_NEAR(double(used(b)), double(slots * stride / 2), double(2 * stride));
  EXPECT_NEAR(double(used(a)), double(slots * stride / 2), double(2 * stride));
  EXPECT_EQ(used(a) + used(b), slots * stride);
  EXPECT_EQ(cache_->quota_of(*b).share_bytes, pool_->pool_bytes() / 2);
  // a goes idle (no demand for 4 pools' worth of b's accesses): b borrows everything.
  sweep(b, 0, 0, 128, 2);
  EXPECT_FALSE(cache_->quota_of(*a).active);
  EXPECT_EQ(used(b), slots * stride);
  EXPECT_EQ(used(a), 0u);
}

TEST_F(SharedBudgetTest, MinimumIsKeptWhileIdleAndMaximumCapsEvenWithFreeMemory) {
  start(4 << 20);
  auto a = open(write_model("model-a", 1, 128, {256}));
  auto b = open(write_model("model-b", 1, 128, {256}));
  cache_->add_session(1);
  const uint64_t stride = a->layouts[0].stride;
  ASSERT_TRUE(cache_->set_quota("model-a", {1.0, 10 * stride, 0}).ok());
  ASSERT_TRUE(cache_->set_quota("model-b", {1.0, 0, 12 * stride}).ok());
  sweep(a, 0, 0, 20);
  EXPECT_EQ(used(a), 20 * stride);
  // b never holds more than its maximum although 22 slots are free...
  sweep(b, 0, 0, 128);
  EXPECT_EQ(used(b), 12 * stride);
  // ...and it can never pin more than that: a request past its maximum fails whole.
  std::vector<uint32_t> many;
  for (uint32_t e = 0; e < 13; ++e) many.push_back(e);
  auto r = acquire(b, 0, many);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("quota maximum"), std::string::npos) << r.status().message();
  // Pinned bytes are b's own: with 12 pinned, a 13th expert finds nothing b may evict.
  std::vector<uint32_t> twelve(many.begin(), many.begin() + 12);
  auto pinned = acquire(b, 0, twelve);
  ASSERT_TRUE(pinned.ok());
  EXPECT_EQ(cache_->model_counters(*b).pinned_bytes, 12 * stride);
  auto more = acquire(b, 0, {100}, 1);
  ASSERT_FALSE(more.ok());
  EXPECT_NE(more.status().message().find("model-b is at its quota maximum"), std::string::npos)
      << more.status().message();
  std::vector<LeaseRef> refs;
  for (const auto& l : *pinned) refs.push_back({l.slot_id, l.generation});
  ASSERT_TRUE(cache_->release(1, refs).ok());
  // Lift b's maximum; a goes idle while b sweeps everything: a keeps exactly its minimum.
  ASSERT_TRUE(cache_->set_quota("model-b", {1.0, 0, 0}).ok());
  sweep(b, 0, 0, 128, 3);
  EXPECT_FALSE(cache_->quota_of(*a).active);
  EXPECT_EQ(used(a), 10 * stride);
  EXPECT_EQ(used(a) + used(b), pool_->capacity_slots(a->layouts[0].slot_class) * stride);
}

TEST_F(SharedBudgetTest, SegmentsMoveToTheClassWhoseMissesTheyWouldHaveSaved) {
  // One model, two slot classes: layer 0's experts are 96 KiB, layer 1's 192 KiB.
  // 8 segments of 512 KiB.
  start(4 << 20, 512 << 10);
  auto m = open(write_model("two-classes", 2, 64, {256, 512}));
  cache_->add_session(1);
  const uint32_t c0 = m->layouts[0].slot_class, c1 = m->layouts[1].slot_class;
  ASSERT_NE(c0, c1);
  // Layer 0 fills the pool first, and is never asked for again.
  sweep(m, 0, 0, 64);
  auto classes = cache_->class_stats();
  EXPECT_EQ(classes[c0].segments, 8u);
  // Layer 1 then cycles over 8 experts (1.5 MiB): the class must take segments from
  // class 0, first because it has none, then because its ghost hits (misses on what it
  // evicted) beat the zero hits of class 0's segments.
  sweep(m, 1, 0, 8, 40);
  classes = cache_->class_stats();
  EXPECT_GE(classes[c1].segments, 3u);  // 8 x 192 KiB need 3 segments
  EXPECT_GT(classes[c1].segments_in, 1u);
  EXPECT_EQ(classes[c1].segments_in, classes[c0].segments_out);
  EXPECT_EQ(cache_->segment_moves(), classes[c1].segments_in);
  // With the cycle resident, a round is all hits.
  EXPECT_EQ(sweep(m, 1, 0, 8), 8u);
}

}  // namespace
}  // namespace moepool

namespace moepool {
namespace {

TEST_F(SharedBudgetTest, PrefetchStopsAtTheCapOnPrefetchBytesStillLoading) {
  start(4 << 20);
  auto m = open(write_model("capped", 1, 64, {256}));
  cache_->add_session(1);
  const uint64_t stride = m->layouts[0].stride;
  cache_->set_prefetch_cap(3 * stride);
  // No read can complete during the call (completions take the cache's lock), so exactly
  // three of the eight hints start although the pool has room for all of them.
  auto started = cache_->prefetch(m, 0, {0, 1, 2, 3, 4, 5, 6, 7});
  ASSERT_TRUE(started.ok()) << started.status().to_string();
  EXPECT_EQ(*started, 3u);
  // Bad probabilities are refused whole.
  auto bad = cache_->prefetch(m, 0, {10, 11}, {0.5});
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  bad = cache_->prefetch(m, 0, {10}, {1.5});
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
}

// An expert larger than the whole cap is still prefetched, one at a time: with nothing
// loading, one prefetch may start whatever its size.
TEST_F(SharedBudgetTest, AnExpertLargerThanThePrefetchCapStillStartsAlone) {
  start(4 << 20);
  auto m = open(write_model("big", 1, 64, {256}));
  cache_->add_session(1);
  cache_->set_prefetch_cap(m->layouts[0].stride / 2);
  auto started = cache_->prefetch(m, 0, {0, 1, 2});
  ASSERT_TRUE(started.ok()) << started.status().to_string();
  EXPECT_EQ(*started, 1u);
}

}  // namespace
}  // namespace moepool
