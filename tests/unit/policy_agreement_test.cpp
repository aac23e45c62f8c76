// The daemon and moepool-sim agree: the first 200 steps of the real gpt-oss-20b trace,
// replayed through the daemon's ExpertCache (one worker, each layer's experts acquired in
// order and released before the next layer, no prefetch, real reads of a GGUF file of
// the trace's shape) and through the simulator's replay with the same capacity in slots
// and the same policy, give equal hit counts, for "lru" and for "default".
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <string>

#include "common/gguf_writer.h"
#include "common/trace.h"
#include "daemon/expert_cache.h"
#include "daemon/model_file.h"
#include "daemon/pread_backend.h"
#include "tools/sim/cache_sim.h"
#include "tools/sim/replay_stream.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kSteps = 200;

std::string trace_prefix() {
  std::string p = MOEPOOL_SOURCE_DIR "/../shared/traces/gpt-oss-20b";
  if (fs::exists(p + ".json") && fs::exists(p + ".experts.u8.zst")) return p;
  return "";
}

class PolicyAgreementTest : public ::testing::TestWithParam<const char*> {
 protected:
  void SetUp() override {
    std::string prefix = trace_prefix();
    if (prefix.empty()) GTEST_SKIP() << "no real trace at ../shared/traces/gpt-oss-20b";
    auto t = Trace::load(prefix);
    ASSERT_TRUE(t.ok()) << t.status().to_string();
    trace_ = std::move(t).value();
    dir_ = fs::path("/var/tmp") / ("moepool-agree-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    path_ = (dir_ / "m.gguf").string();
    // The trace's shape with tiny experts: f16 [32, 32] per projection, 2 KiB each.
    const TraceShape& sh = trace_.shape();
    GgufWriter w;
    w.add_string("general.architecture", "qwen2moe");
    w.add_string("general.name", "agree-test");
    for (uint32_t layer = 0; layer < sh.layers; ++layer)
      for (const char* p : {"gate", "up", "down"})
        w.add_tensor("blk." + std::to_string(layer) + ".ffn_" + p + "_exps.weight", GgmlType::F16,
                     {32, 32, sh.experts}, [](uint64_t off, std::span<uint8_t> out) {
                       for (size_t i = 0; i < out.size(); ++i) out[i] = static_cast<uint8_t>(off + i);
                     });
    ASSERT_TRUE(w.write(path_).ok());
  }
  void TearDown() override {
    if (engine_) engine_->stop();
    cache_.reset();
    if (!dir_.empty()) fs::remove_all(dir_);
  }

  // Starts a cache of about `slots` slots under `policy`; returns its real capacity.
  uint64_t start(const char* policy, uint64_t slots) {
    auto cat = Catalog::open(path_);
    EXPECT_TRUE(cat.ok()) << cat.status().to_string();
    model_ = std::make_shared<Model>();
    model_->catalog = std::move(cat).value();
    model_->id_ = model_->catalog.model_id();
    auto file = open_model_file(path_);
    EXPECT_TRUE(file.ok());
    model_->files.push_back(std::move(file).value());
    // The stride is known once a layout exists: size the pool from a throwaway cache.
    auto probe = Pool::create({kMinPool, 0, "off"});
    EXPECT_TRUE(probe.ok());
    {
      ExpertCache c(probe->get(), static_cast<IoEngine*>(nullptr));
      EXPECT_TRUE(c.prepare_model(model_.get()).ok());
    }
    uint64_t stride = model_->layouts[0].stride;
    uint64_t bytes = (slots * stride + 4095) / 4096 * 4096;
    auto pool = Pool::create({std::max(bytes, kMinPool), 0, "off"});
    EXPECT_TRUE(pool.ok()) << pool.status().to_string();
    pool_ = std::move(pool).value();
    auto backend = PreadBackend::create(2, 16);
    EXPECT_TRUE(backend.ok());
    IoEngine::Options o;
    o.direct = false;
    auto engine = IoEngine::create(o, std::move(backend).value());
    EXPECT_TRUE(engine.ok()) << engine.status().to_string();
    engine_ = std::move(engine).value();
    auto p = make_policy(policy);
    EXPECT_TRUE(p.ok());
    cache_ = std::make_unique<ExpertCache>(pool_.get(), engine_.get(), std::move(p).value());
    EXPECT_TRUE(cache_->prepare_model(model_.get()).ok());
    return pool_->capacity_slots(model_->layouts[0].slot_class);
  }

  static constexpr uint64_t kMinPool = 1ull << 20;
  Trace trace_;
  fs::path dir_;
  std::string path_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<IoEngine> engine_;
  std::unique_ptr<ExpertCache> cache_;
  std::shared_ptr<Model> model_;
};

TEST_P(PolicyAgreementTest, DaemonAndSimulatorHitTheSameOnTheRealTrace) {
  const char* policy = GetParam();
  sim::ReplayStream st = sim::build_stream({&trace_}, 1, kSteps);
  ASSERT_FALSE(st.requests.empty());
  uint64_t total = uint64_t{trace_.shape().layers} * trace_.shape().experts;
  uint64_t cap = start(policy, total / 4);  // about 25% of the model's experts
  ASSERT_GE(cap, trace_.shape().top_k);
  ASSERT_LT(cap, total) << "the cache must be small enough to evict";

  cache_->add_session(1);
  for (const sim::LayerRequest& r : st.requests) {
    std::vector<uint32_t> experts(st.experts.begin() + r.first, st.experts.begin() + r.first + r.count);
    std::promise<Result<std::vector<LeaseInfo>>> done;
    cache_->acquire(1, model_, r.layer, experts,
                    [&done](Result<std::vector<LeaseInfo>> x) { done.set_value(std::move(x)); });
    auto leases = done.get_future().get();
    ASSERT_TRUE(leases.ok()) << leases.status().to_string();
    std::vector<LeaseRef> refs;
    for (const LeaseInfo& l : *leases) refs.push_back({l.slot_id, l.generation});
    ASSERT_TRUE(cache_->release(1, refs).ok());
  }
  CacheStats daemon = cache_->stats();

  auto p = make_policy(policy);
  ASSERT_TRUE(p.ok());
  sim::SimResult sim = sim::run_policy(st, **p, cap, sim::IoModel{}, sim::PrefetchOptions{});
  EXPECT_EQ(daemon.hits + daemon.misses, sim.accesses);
  EXPECT_EQ(daemon.hits, sim.hits) << policy << " at " << cap << " slots";
  EXPECT_GT(daemon.evictions, 0u);
  RecordProperty("capacity_slots", std::to_string(cap));
  RecordProperty("hits", std::to_string(daemon.hits));
  RecordProperty("accesses", std::to_string(sim.accesses));
}

INSTANTIATE_TEST_SUITE_P(Policies, PolicyAgreementTest, ::testing::Values("lru", "default"),
                         [](const ::testing::TestParamInfo<const char*>& p) {
                           return std::string(p.param);
                         });

}  // namespace
}  // namespace moepool
