// ExpertCache: pins, policy-driven eviction (LRU and the default policy), read errors, sessions — on a real GGUF file read by a
// real I/O engine (pread, wrapped by the fault seam where a test injects faults).
#include "daemon/expert_cache.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <future>
#include <set>

#include "common/gguf_writer.h"
#include "common/synth_model.h"
#include "daemon/fault_backend.h"
#include "daemon/pread_backend.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

// Byte `i` of tensor `t`: recomputable by the test.
uint8_t pattern(size_t t, uint64_t i) { return static_cast<uint8_t>((i * 131 + t * 17 + (i >> 12)) & 0xff); }

class ExpertCacheTest : public ::testing::Test {
 protected:
  static constexpr uint32_t kExperts = 8;
  // f16 [256, 64, 8]: 32 KiB per expert per projection.
  void SetUp() override {
    dir_ = fs::path("/var/tmp") / ("moepool-cache-test-" + std::to_string(getpid()));
    fs::create_directories(dir_);
    path_ = (dir_ / "m.gguf").string();
    GgufWriter w;
    w.add_string("general.architecture", "qwen2moe");
    w.add_string("general.name", "cache-test");
    size_t t = 0;
    for (int layer = 0; layer < 2; ++layer)
      for (const char* p : {"gate", "up", "down"}) {
        size_t tt = t++;
        std::vector<uint64_t> ne = {256, 64, kExperts};
        if (std::string(p) == "down") ne = {64, 256, kExperts};
        w.add_tensor("blk." + std::to_string(layer) + ".ffn_" + p + "_exps.weight", GgmlType::F16, ne,
                     [tt](uint64_t off, std::span<uint8_t> out) {
                       for (size_t i = 0; i < out.size(); ++i) out[i] = pattern(tt, off + i);
                     });
      }
    ASSERT_TRUE(w.write(path_).ok());
  }
  void TearDown() override {
    if (engine_) engine_->stop();  // completes in-flight reads while the cache still lives
    cache_.reset();
    fs::remove_all(dir_);
  }

  // Builds pool, engine (optionally behind the fault seam), cache and the model.
  void start(uint64_t pool_bytes, bool faulty = false, bool direct = true,
             const char* policy = "default") {
    auto pool = Pool::create({pool_bytes, 0, "off"});
    ASSERT_TRUE(pool.ok()) << pool.status().to_string();
    pool_ = std::move(pool).value();
    auto inner = PreadBackend::create(2, 16);
    ASSERT_TRUE(inner.ok());
    std::unique_ptr<IoBackend> backend = std::move(inner).value();
    if (faulty) {
      auto f = std::make_unique<FaultyBackend>(std::move(backend));
      faulty_ = f.get();
      backend = std::move(f);
    }
    IoEngine::Options options;
    options.direct = direct;
    auto engine = IoEngine::create(options, std::move(backend));
    ASSERT_TRUE(engine.ok()) << engine.status().to_string();
    engine_ = std::move(engine).value();
    auto p = make_policy(policy);
    ASSERT_TRUE(p.ok()) << p.status().to_string();
    cache_ = std::make_unique<ExpertCache>(pool_.get(), engine_.get(), std::move(p).value());
    model_ = std::make_shared<Model>();
    auto cat = Catalog::open(path_);
    ASSERT_TRUE(cat.ok()) << cat.status().to_string();
    model_->catalog = std::move(cat).value();
    model_->id_ = model_->catalog.model_id();
    auto file = open_model_file(path_);
    ASSERT_TRUE(file.ok());
    model_->files.push_back(std::move(file).value());
    ASSERT_TRUE(cache_->prepare_model(model_.get()).ok());
  }

  Result<std::vector<LeaseInfo>> acquire(uint64_t session, uint32_t layer, std::vector<uint32_t> experts) {
    std::promise<Result<std::vector<LeaseInfo>>> p;
    auto f = p.get_future();
    cache_->acquire(session, model_, layer, std::move(experts),
                    [&p](Result<std::vector<LeaseInfo>> r) { p.set_value(std::move(r)); });
    return f.get();
  }

  // Checks that every projection of the lease holds exactly the file's bytes.
  void expect_bytes(uint32_t layer, const LeaseInfo& l) {
    const MoeLayer* moe = model_->catalog.layer(layer);
    ASSERT_EQ(l.projections.size(), 3u);
    for (size_t p = 0; p < 3; ++p) {
      Extent x = moe->projections[p].expert_extent(l.expert);
      std::vector<uint8_t> want(x.bytes);
      ASSERT_EQ(pread(model_->files[0].buffered_fd, want.data(), x.bytes, x.offset), (ssize_t)x.bytes);
      const uint8_t* got = pool_->base() + l.pool_offset + l.projections[p].offset;
      ASSERT_EQ(0, memcmp(want.data(), got, x.bytes)) << "expert " << l.expert << " proj " << p;
    }
  }

  static std::vector<LeaseRef> refs(const std::vector<LeaseInfo>& ls) {
    std::vector<LeaseRef> out;
    for (const auto& l : ls) out.push_back({l.slot_id, l.generation});
    return out;
  }

  uint64_t stride() const { return model_->layouts[0].stride; }

  fs::path dir_;
  std::string path_;
  std::unique_ptr<Pool> pool_;
  std::unique_ptr<IoEngine> engine_;
  FaultyBackend* faulty_ = nullptr;
  std::unique_ptr<ExpertCache> cache_;
  std::shared_ptr<Model> model_;
};

TEST_F(ExpertCacheTest, MissReadsThenHitServesSameBytes) {
  start(1 << 20);
  cache_->add_session(1);
  auto a = acquire(1, 0, {3, 5});
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  ASSERT_EQ(a->size(), 2u);
  EXPECT_EQ((*a)[0].expert, 3u);
  EXPECT_FALSE((*a)[0].hit);
  for (const auto& l : *a) expect_bytes(0, l);
  ASSERT_TRUE(cache_->release(1, refs(*a)).ok());
  auto b = acquire(1, 0, {5});
  ASSERT_TRUE(b.ok());
  EXPECT_TRUE((*b)[0].hit);
  EXPECT_EQ((*b)[0].slot_id, (*a)[1].slot_id);
  expect_bytes(0, (*b)[0]);
  CacheStats st = cache_->stats();
  EXPECT_EQ(st.misses, 2u);
  EXPECT_EQ(st.hits, 1u);
  EXPECT_EQ(st.used_bytes, 2 * stride());
  EXPECT_EQ(st.pinned_bytes, stride());
}

TEST_F(ExpertCacheTest, SlotsOfALayerShareOneStrideAndProjectionOffsets) {
  start(1 << 20);
  cache_->add_session(1);
  auto a = acquire(1, 1, {0, 1, 2, 7});
  ASSERT_TRUE(a.ok());
  for (const auto& l : *a) {
    EXPECT_EQ(l.stride, stride());
    EXPECT_EQ(l.pool_offset, l.slot_index * l.stride);
    // f16 experts of 32 KiB: every expert sits at the same offset inside its slot.
    for (size_t p = 0; p < 3; ++p) EXPECT_EQ(l.projections[p].offset, (*a)[0].projections[p].offset);
  }
  EXPECT_EQ(engine_->stats().moves, 0u) << "experts of 4 KiB multiples are read in place";
}

// Experts whose byte size is an odd multiple of 32, so that each expert of a tensor starts
// at another offset inside its 4 KiB block; read with and without O_DIRECT.
struct UnalignedCase {
  GgmlType type;
  uint64_t embd, ffn;
  bool direct;
};

void PrintTo(const UnalignedCase& c, std::ostream* os) {
  *os << ggml_type_name(c.type) << " [" << c.embd << ", " << c.ffn << "] "
      << (c.direct ? "O_DIRECT" : "buffered");
}

class UnalignedExperts : public ExpertCacheTest, public ::testing::WithParamInterface<UnalignedCase> {
 protected:
  void SetUp() override {
    ExpertCacheTest::SetUp();
    SynthSpec spec;
    spec.out = path_;  // replaces the fixture's model
    spec.layers = 2;
    spec.experts = kExperts;
    spec.type = GetParam().type;
    spec.embd = GetParam().embd;
    spec.ffn = GetParam().ffn;
    auto layout = synth_write(spec);
    ASSERT_TRUE(layout.ok()) << layout.status().to_string();
  }
};

TEST_P(UnalignedExperts, EveryExpertOfALayerSitsAtTheLayersOffsetWithTheFilesBytes) {
  start(1 << 20, /*faulty=*/false, GetParam().direct);
  cache_->add_session(1);
  for (uint32_t layer = 0; layer < 2; ++layer) {
    const MoeLayer* moe = model_->catalog.layer(layer);
    ASSERT_NE(moe, nullptr);
    ASSERT_NE(moe->projections[0].expert_bytes % 4096, 0u);
    ASSERT_EQ(moe->projections[0].expert_bytes / 32 % 2, 1u) << "an odd multiple of 32";
    std::set<uint64_t> misalignments;
    for (uint32_t e = 0; e < kExperts; ++e)
      misalignments.insert(moe->projections[0].expert_extent(e).offset % 4096);
    ASSERT_GT(misalignments.size(), 1u) << "experts must land at different offsets";

    auto a = acquire(1, layer, {0, 1, 2, 3, 4, 5, 6, 7});
    ASSERT_TRUE(a.ok()) << a.status().to_string();
    const LayerSlotLayout& layout = model_->layouts[layer];
    for (const LeaseInfo& l : *a) {
      ASSERT_EQ(l.projections.size(), 3u);
      for (size_t p = 0; p < 3; ++p)
        EXPECT_EQ(l.projections[p].offset, layout.proj_offset[p])
            << "layer " << layer << " expert " << l.expert << " projection " << p;
      expect_bytes(layer, l);
    }
    ASSERT_TRUE(cache_->release(1, refs(*a)).ok());
  }
  if (GetParam().direct)
    EXPECT_GT(engine_->stats().moves, 0u);
  else
    EXPECT_EQ(engine_->stats().moves, 0u) << "buffered reads go straight to the layer's offset";
}

TEST_P(UnalignedExperts, ReusedSlotsKeepTheLayersOffset) {
  // 128 KiB: fewer slots than the model's 16 experts, so experts reuse each other's slots.
  start(128 << 10, /*faulty=*/false, GetParam().direct);
  ASSERT_LT(pool_->capacity_slots(model_->layouts[0].slot_class), 2u * kExperts);
  cache_->add_session(1);
  for (int round = 0; round < 3; ++round) {
    for (uint32_t layer = 0; layer < 2; ++layer) {
      for (uint32_t e = 0; e < kExperts; ++e) {
        auto a = acquire(1, layer, {e, (e + 5) % kExperts});
        ASSERT_TRUE(a.ok()) << a.status().to_string();
        for (const LeaseInfo& l : *a) {
          for (size_t p = 0; p < 3; ++p)
            EXPECT_EQ(l.projections[p].offset, model_->layouts[layer].proj_offset[p]);
          expect_bytes(layer, l);
        }
        ASSERT_TRUE(cache_->release(1, refs(*a)).ok());
      }
    }
  }
  EXPECT_GT(cache_->stats().evictions, 0u);
}

// f32 [40, 33]: 5280 = 165 x 32 bytes per expert; f16 [48, 35]: 3360 = 105 x 32.
INSTANTIATE_TEST_SUITE_P(
    OddMultiplesOf32, UnalignedExperts,
    ::testing::Values(UnalignedCase{GgmlType::F32, 40, 33, true},
                      UnalignedCase{GgmlType::F32, 40, 33, false},
                      UnalignedCase{GgmlType::F16, 48, 35, true},
                      UnalignedCase{GgmlType::F16, 48, 35, false}),
    [](const ::testing::TestParamInfo<UnalignedCase>& p) {
      return std::string(ggml_type_name(p.param.type)) + "_" +
             (p.param.direct ? "direct" : "buffered");
    });

TEST_F(ExpertCacheTest, PinnedExpertsAreNeverEvictedAndFullPoolFailsFast) {
  start(1 << 20);
  uint64_t capacity = (1 << 20) / stride();
  ASSERT_GE(capacity, 2u);
  ASSERT_LT(capacity, 2u * kExperts);
  cache_->add_session(1);
  cache_->add_session(2);
  // Session 1 pins as many experts as fit (across both layers).
  std::vector<LeaseInfo> held;
  for (uint32_t i = 0; i < capacity; ++i) {
    auto r = acquire(1, i / kExperts, {i % kExperts});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    held.push_back((*r)[0]);
  }
  auto denied = acquire(2, 1, {kExperts - 1});
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), Code::kResourceExhausted);
  for (uint32_t i = 0; i < held.size(); ++i) expect_bytes(i / kExperts, held[i]);
  // Releasing one pin frees exactly that slot for reuse.
  ASSERT_TRUE(cache_->release(1, {{held[0].slot_id, held[0].generation}}).ok());
  auto ok = acquire(2, 1, {kExperts - 1});
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_EQ((*ok)[0].slot_id, held[0].slot_id);
  EXPECT_GT((*ok)[0].generation, held[0].generation) << "reuse bumps the generation";
  expect_bytes(1, (*ok)[0]);
}

TEST_F(ExpertCacheTest, EvictsLeastRecentlyUsed) {
  start(1 << 20, false, true, "lru");
  uint64_t capacity = (1 << 20) / stride();
  cache_->add_session(1);
  // Fill the pool with layer-0 and layer-1 experts, released in order; then touch the first.
  std::vector<std::pair<uint32_t, uint32_t>> order;
  for (uint32_t i = 0; i < capacity; ++i) order.push_back({i / kExperts, i % kExperts});
  for (auto [layer, e] : order) {
    auto r = acquire(1, layer, {e});
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(cache_->release(1, refs(*r)).ok());
  }
  auto touch = acquire(1, order[0].first, {order[0].second});
  ASSERT_TRUE(touch.ok());
  EXPECT_TRUE((*touch)[0].hit);
  ASSERT_TRUE(cache_->release(1, refs(*touch)).ok());
  // A new expert evicts the least recently used: order[1], not the touched order[0].
  auto fresh = acquire(1, 1, {kExperts - 1});
  ASSERT_TRUE(fresh.ok());
  ASSERT_TRUE(cache_->release(1, refs(*fresh)).ok());
  auto first = acquire(1, order[0].first, {order[0].second});
  EXPECT_TRUE((*first)[0].hit);
  ASSERT_TRUE(cache_->release(1, refs(*first)).ok());
  auto second = acquire(1, order[1].first, {order[1].second});
  EXPECT_FALSE((*second)[0].hit);
  EXPECT_EQ(cache_->stats().evictions, 2u);
}

// An expert demanded often outlasts a run of one-off experts under the default policy
// (decayed frequency); under LRU the one-offs push it out.
TEST_F(ExpertCacheTest, DefaultPolicyKeepsAFrequentExpertThatLruEvicts) {
  for (const char* policy : {"default", "lru"}) {
    SCOPED_TRACE(policy);
    if (engine_) engine_->stop();  // the previous round's cache goes first
    cache_.reset();
    start(1 << 20, false, true, policy);
    uint64_t capacity = (1 << 20) / stride();
    ASSERT_LT(capacity, 2u * kExperts - 1);
    cache_->add_session(1);
    for (int i = 0; i < 5; ++i) {
      auto r = acquire(1, 0, {0});
      ASSERT_TRUE(r.ok());
      ASSERT_TRUE(cache_->release(1, refs(*r)).ok());
    }
    for (uint32_t i = 1; i < 2 * kExperts; ++i) {  // every other expert once
      auto r = acquire(1, i / kExperts, {i % kExperts});
      ASSERT_TRUE(r.ok());
      ASSERT_TRUE(cache_->release(1, refs(*r)).ok());
    }
    auto again = acquire(1, 0, {0});
    ASSERT_TRUE(again.ok());
    EXPECT_EQ((*again)[0].hit, std::string(policy) == "default");
    ASSERT_TRUE(cache_->release(1, refs(*again)).ok());
  }
}

// Whatever the policy prefers, a pinned expert is never its victim: a pool full of pins
// but one slot evicts only that slot.
TEST_F(ExpertCacheTest, DefaultPolicyNeverEvictsPinnedExperts) {
  start(1 << 20);
  uint64_t capacity = (1 << 20) / stride();
  cache_->add_session(1);
  std::vector<LeaseInfo> held;
  for (int i = 0; i < 4; ++i) {  // expert 0 of layer 0 is the most popular
    auto r = acquire(1, 0, {0});
    ASSERT_TRUE(r.ok());
    if (i < 3) ASSERT_TRUE(cache_->release(1, refs(*r)).ok());
    else held.push_back((*r)[0]);
  }
  for (uint32_t i = 1; i < capacity; ++i) {
    auto r = acquire(1, i / kExperts, {i % kExperts});
    ASSERT_TRUE(r.ok());
    held.push_back((*r)[0]);
  }
  ASSERT_TRUE(cache_->release(1, {{held.back().slot_id, held.back().generation}}).ok());
  for (uint32_t i = capacity; i < 2 * kExperts; ++i) {
    auto r = acquire(1, i / kExperts, {i % kExperts});
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    EXPECT_EQ((*r)[0].slot_id, held.back().slot_id) << "only the unpinned slot is reused";
    ASSERT_TRUE(cache_->release(1, refs(*r)).ok());
  }
  held.pop_back();
  for (size_t i = 0; i < held.size(); ++i) expect_bytes(i / kExperts, held[i]);
}

TEST_F(ExpertCacheTest, RequestLargerThanThePoolIsResourceExhausted) {
  start(256 << 10);  // two slots at most
  cache_->add_session(1);
  auto r = acquire(1, 0, {0, 1, 2, 3});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted);
  EXPECT_NE(r.status().message().find("at most"), std::string::npos);
  EXPECT_EQ(cache_->stats().pinned_bytes, 0u);
}

TEST_F(ExpertCacheTest, BadIdsAreInvalidArgumentAndChangeNothing) {
  start(1 << 20);
  cache_->add_session(1);
  auto layer = acquire(1, 9, {0});
  EXPECT_EQ(layer.status().code(), Code::kInvalidArgument);
  EXPECT_NE(layer.status().message().find("layer 9"), std::string::npos);
  auto expert = acquire(1, 0, {1, kExperts});
  EXPECT_EQ(expert.status().code(), Code::kInvalidArgument);
  EXPECT_NE(expert.status().message().find("out of range"), std::string::npos);
  auto dup = acquire(1, 0, {2, 2});
  EXPECT_EQ(dup.status().code(), Code::kInvalidArgument);
  CacheStats st = cache_->stats();
  EXPECT_EQ(st.used_bytes, 0u);
  EXPECT_EQ(st.misses, 0u);
}

TEST_F(ExpertCacheTest, StaleOrForeignReleaseIsRejectedWhole) {
  start(1 << 20);
  cache_->add_session(1);
  cache_->add_session(2);
  auto a = acquire(1, 0, {1, 2});
  ASSERT_TRUE(a.ok());
  auto bad = refs(*a);
  bad[1].generation += 7;
  EXPECT_EQ(cache_->release(1, bad).code(), Code::kInvalidArgument);
  EXPECT_EQ(cache_->release(2, refs(*a)).code(), Code::kInvalidArgument) << "not session 2's pins";
  EXPECT_EQ(cache_->stats().pinned_bytes, 2 * stride()) << "a rejected release changes nothing";
  ASSERT_TRUE(cache_->release(1, refs(*a)).ok());
  EXPECT_EQ(cache_->release(1, refs(*a)).code(), Code::kInvalidArgument) << "double release";
}

TEST_F(ExpertCacheTest, SessionEndReleasesAllItsPins) {
  start(1 << 20);
  cache_->add_session(1);
  auto a = acquire(1, 0, {0, 1, 2});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(cache_->stats().pinned_bytes, 3 * stride());
  cache_->release_session(1);
  EXPECT_EQ(cache_->stats().pinned_bytes, 0u);
  EXPECT_EQ(cache_->stats().used_bytes, 3 * stride()) << "experts stay resident, evictable";
  auto after = acquire(1, 0, {0});
  EXPECT_EQ(after.status().code(), Code::kNotFound) << "an ended session is gone";
}

TEST_F(ExpertCacheTest, ReadErrorFailsTheRequestFreesTheSlotAndRetrySucceeds) {
  start(1 << 20, /*faulty=*/true);
  faulty_->set_rule(FaultyBackend::fail_nth(2));  // one read of the first expert's three
  cache_->add_session(1);
  auto r = acquire(1, 0, {4});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kUnavailable);
  EXPECT_NE(r.status().message().find("expert 4 of layer 0 of model cache-test"), std::string::npos)
      << r.status().message();
  CacheStats st = cache_->stats();
  EXPECT_EQ(st.read_errors, 1u);
  EXPECT_EQ(st.used_bytes, 0u);
  EXPECT_EQ(st.pinned_bytes, 0u);
  faulty_->set_rule(FaultyBackend::pass_all());
  auto again = acquire(1, 0, {4});
  ASSERT_TRUE(again.ok()) << again.status().to_string();
  EXPECT_FALSE((*again)[0].hit);
  expect_bytes(0, (*again)[0]);
}

TEST_F(ExpertCacheTest, ShortReadIsAnErrorNeverServed) {
  start(1 << 20, /*faulty=*/true);
  faulty_->set_rule(FaultyBackend::short_all(100));  // retries stay short too
  cache_->add_session(1);
  auto r = acquire(1, 1, {6});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("short read"), std::string::npos) << r.status().message();
}

TEST_F(ExpertCacheTest, SecondAcquirerOfALoadingExpertWaitsForTheSameRead) {
  start(1 << 20, /*faulty=*/true);
  faulty_->set_rule(FaultyBackend::stall_all());
  cache_->add_session(1);
  cache_->add_session(2);
  std::promise<Result<std::vector<LeaseInfo>>> p1, p2;
  cache_->acquire(1, model_, 0, {2}, [&](auto r) { p1.set_value(std::move(r)); });
  faulty_->wait_stalled(3);  // all of the expert's reads (gate, up, down) were issued
  cache_->acquire(2, model_, 0, {2}, [&](auto r) { p2.set_value(std::move(r)); });
  size_t reads_before = faulty_->issued().size();
  faulty_->set_rule(FaultyBackend::pass_all());
  faulty_->release_stalled();
  auto r1 = p1.get_future().get(), r2 = p2.get_future().get();
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_FALSE((*r1)[0].hit);
  EXPECT_TRUE((*r2)[0].hit);
  EXPECT_EQ((*r1)[0].slot_id, (*r2)[0].slot_id);
  EXPECT_EQ(faulty_->issued().size(), reads_before) << "no second read for the same expert";
  expect_bytes(0, (*r2)[0]);
  EXPECT_EQ(pool_->control() ? slot_entries(pool_->control())[(*r1)[0].slot_id].state.load() : 0u,
            kSlotReady);
}

TEST_F(ExpertCacheTest, PrefetchLoadsWithoutPinning) {
  start(1 << 20);
  cache_->add_session(1);
  auto q = cache_->prefetch(model_, 0, {1, 2});
  ASSERT_TRUE(q.ok());
  EXPECT_EQ(*q, 2u);
  auto r = acquire(1, 0, {1});  // waits for the prefetch read if still in flight
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE((*r)[0].hit);
  expect_bytes(0, (*r)[0]);
  EXPECT_EQ(cache_->stats().pinned_bytes, stride());
}

}  // namespace
}  // namespace moepool
