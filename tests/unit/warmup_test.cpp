// Tests of the warm-up plan (daemon/warmup.h): hottest experts first, within the budget,
// issued in file order.
#include "daemon/warmup.h"

#include <gtest/gtest.h>

#include "tests/unit/temp_dir.h"
#include "tests/unit/tiny_model.h"

namespace moepool {
namespace {

class WarmupPlanTest : public ::testing::Test {
 protected:
  void SetUp() override {
    model_ = tiny_model(dir_.file("m.gguf"), 3, 8);
    ASSERT_NE(model_, nullptr);
    model_->layouts.resize(3);
    for (auto& l : model_->layouts) l.stride = 4096;
  }
  // The file offset of the first byte of (layer, expert).
  uint64_t offset(const WarmItem& w) const {
    const MoeLayer* l = model_->catalog.layer(w.layer);
    uint64_t o = UINT64_MAX;
    for (const ProjTensor& p : l->projections) o = std::min(o, p.expert_extent(w.expert).offset);
    return o;
  }
  TempDir dir_{"moepool_warmup_test"};
  std::shared_ptr<Model> model_;
};

TEST_F(WarmupPlanTest, TakesTheHottestThatFitAndOrdersThemByFileOffset) {
  std::vector<PopularityEntry> e = {{2, 1, 50}, {0, 7, 40}, {1, 3, 30}, {0, 2, 20}, {2, 6, 1}};
  uint64_t bytes = 0;
  auto plan = plan_warmup(*model_, e, 4 * 4096, &bytes);
  ASSERT_EQ(plan.size(), 4u) << "the budget holds 4 slots; the coldest is left out";
  EXPECT_EQ(bytes, 4u * 4096);
  for (size_t i = 1; i < plan.size(); ++i)
    EXPECT_LT(offset(plan[i - 1]), offset(plan[i])) << "reads sweep the file once, in order";
  // Scores carry the counts, to seed the policy.
  for (const WarmItem& w : plan) EXPECT_GT(w.score, 1.0) << w.layer << "/" << w.expert;
}

TEST_F(WarmupPlanTest, SkipsExpertsTheModelDoesNotHaveAndZeroCounts) {
  std::vector<PopularityEntry> e = {{9, 1, 50}, {0, 99, 40}, {1, 3, 30}, {1, 4, 0}};
  auto plan = plan_warmup(*model_, e, 1 << 20);
  ASSERT_EQ(plan.size(), 1u);
  EXPECT_EQ(plan[0].layer, 1u);
  EXPECT_EQ(plan[0].expert, 3u);
}

TEST_F(WarmupPlanTest, NothingFitsInAZeroBudget) {
  EXPECT_TRUE(plan_warmup(*model_, {{0, 1, 5}}, 0).empty());
}

}  // namespace
}  // namespace moepool
