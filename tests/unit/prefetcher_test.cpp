// Tests of the daemon's predictor-driven prefetch (daemon/prefetcher.h).
#include "daemon/prefetcher.h"

#include <gtest/gtest.h>

#include "tests/unit/temp_dir.h"
#include "tests/unit/tiny_model.h"

namespace moepool {
namespace {

struct Issued {
  uint32_t layer;
  std::vector<uint32_t> experts;
  std::vector<double> p;
};

class PrefetcherTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = tiny_model(dir_.file("m.gguf"), 4, 8);
    ASSERT_NE(model_, nullptr);
  }
  Prefetcher make(double min_p, uint32_t distance = 1) {
    return Prefetcher(min_p, distance, [this](const std::shared_ptr<Model>&, uint32_t layer,
                                    std::vector<uint32_t> e, std::vector<double> p) {
      issued_.push_back({layer, std::move(e), std::move(p)});
    });
  }
  // One step of a session: layers 0..3 route to `route[l]`.
  void step(Prefetcher& pf, uint64_t session, const std::vector<std::vector<uint32_t>>& route) {
    for (uint32_t l = 0; l < route.size(); ++l) pf.on_acquire(session, model_, l, route[l]);
  }

  TempDir dir_{"moepool_prefetcher_test"};
  std::shared_ptr<Model> model_;
  std::vector<Issued> issued_;
};

TEST_F(PrefetcherTest, LearnsARepeatingRouteAndPrefetchesTheNextLayer) {
  Prefetcher pf = make(0.5);
  const std::vector<std::vector<uint32_t>> route = {{0, 1}, {2, 3}, {4, 5}, {6, 7}};
  step(pf, 1, route);
  EXPECT_TRUE(issued_.empty()) << "nothing is predicted before anything was learned";
  step(pf, 1, route);
  // Second step: layers 0, 1, 2 predict layers 1, 2, 3 exactly; layer 3 is the last.
  ASSERT_EQ(issued_.size(), 3u);
  for (uint32_t l = 0; l < 3; ++l) {
    EXPECT_EQ(issued_[l].layer, l + 1);
    std::vector<uint32_t> want = route[l + 1];
    EXPECT_EQ(issued_[l].experts, want);
    EXPECT_EQ(issued_[l].p, (std::vector<double>{1.0, 1.0}));
  }
}

TEST_F(PrefetcherTest, WithDistanceThreeEachLayerGuessesTheNextThreeNearestFirst) {
  Prefetcher pf = make(0.5, 3);
  const std::vector<std::vector<uint32_t>> route = {{0, 1}, {2, 3}, {4, 5}, {6, 7}};
  step(pf, 1, route);
  EXPECT_TRUE(issued_.empty());
  step(pf, 1, route);
  // Layer 0 guesses 1, 2, 3; layer 1 guesses 2, 3; layer 2 guesses 3.
  std::vector<uint32_t> layers;
  for (const Issued& i : issued_) {
    layers.push_back(i.layer);
    EXPECT_EQ(i.experts, route[i.layer]);
  }
  EXPECT_EQ(layers, (std::vector<uint32_t>{1, 2, 3, 2, 3, 3}));
}

TEST_F(PrefetcherTest, GuessesBelowTheMinimumProbabilityAreNotIssued) {
  Prefetcher pf = make(0.6);
  // Layer 1 follows {0} with {1} half of the time and {2} the other half.
  pf.on_acquire(1, model_, 0, {0});
  pf.on_acquire(1, model_, 1, {1});
  pf.on_acquire(1, model_, 0, {0});
  pf.on_acquire(1, model_, 1, {2});
  issued_.clear();
  pf.on_acquire(1, model_, 0, {0});
  EXPECT_TRUE(issued_.empty()) << "p = 0.5 is below 0.6";

  Prefetcher low = make(0.5);
  low.on_acquire(1, model_, 0, {0});
  low.on_acquire(1, model_, 1, {1});
  low.on_acquire(1, model_, 0, {0});
  low.on_acquire(1, model_, 1, {2});
  issued_.clear();
  low.on_acquire(1, model_, 0, {0});
  ASSERT_EQ(issued_.size(), 1u);
  EXPECT_EQ(issued_[0].experts, (std::vector<uint32_t>{1}))
      << "at most as many guesses as the request named (1), the likeliest first";
  EXPECT_DOUBLE_EQ(issued_[0].p[0], 0.5);
}

TEST_F(PrefetcherTest, SessionsLearnFromTheirOwnPreviousLayerOnly) {
  Prefetcher pf = make(0.5);
  // Interleaved sessions: session 2's layer 1 must not be learned as following session 1's
  // layer 0.
  pf.on_acquire(1, model_, 0, {0});
  pf.on_acquire(2, model_, 1, {7});
  pf.on_acquire(1, model_, 1, {3});
  issued_.clear();
  pf.on_acquire(3, model_, 0, {0});
  ASSERT_EQ(issued_.size(), 1u);
  EXPECT_EQ(issued_[0].experts, (std::vector<uint32_t>{3}));
}

TEST_F(PrefetcherTest, ExpertsOutsideTheLayerAreIgnored) {
  Prefetcher pf = make(0.5);
  pf.on_acquire(1, model_, 0, {0});
  pf.on_acquire(1, model_, 1, {4000000000u});  // would grow the table to 4e9^2
  pf.on_acquire(1, model_, 9, {1});            // no such layer
  pf.on_acquire(1, model_, 1, {1});
  issued_.clear();
  pf.on_acquire(1, model_, 0, {0});
  ASSERT_EQ(issued_.size(), 1u);
  EXPECT_EQ(issued_[0].experts, (std::vector<uint32_t>{1}));
}

TEST_F(PrefetcherTest, ForgetsEndedSessions) {
  Prefetcher pf = make(0.5);
  pf.on_acquire(1, model_, 0, {0});
  pf.forget_sessions([](uint64_t) { return false; });
  pf.on_acquire(1, model_, 1, {5});  // its layer 0 was forgotten: nothing learned
  issued_.clear();
  pf.on_acquire(2, model_, 0, {0});
  EXPECT_TRUE(issued_.empty());
}

}  // namespace
}  // namespace moepool
