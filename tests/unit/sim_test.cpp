// moepool-sim's replay core (tools/sim/): the replay stream, Belady's MIN, the policy
// replay with simulated I/O, and LRU on the real gpt-oss-20b trace against the
// reference numbers of ../shared/traces/README.md.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/trace.h"
#include "daemon/policy.h"
#include "tools/sim/belady.h"
#include "tools/sim/cache_sim.h"
#include "tools/sim/replay_stream.h"

namespace moepool::sim {
namespace {

Trace one_layer_trace(const std::vector<uint8_t>& ids, uint32_t experts) {
  TraceShape shape{1, experts, 1, ids.size()};
  auto t = Trace::from_ids("hand", shape, {}, ids);
  EXPECT_TRUE(t.ok()) << t.status().to_string();
  return std::move(*t);
}

SimResult replay(const ReplayStream& st, const char* policy, uint64_t cap, bool prefetch,
                 IoModel io = {}) {
  auto p = make_policy(policy);
  EXPECT_TRUE(p.ok());
  PrefetchOptions o;
  o.enabled = prefetch;
  return run_policy(st, **p, cap, io, o);
}

// 0 1 2 0 1 3 0 1 with room for 2: MIN hits the 4th and 7th demands (it evicts 1 for 2,
// 2 for 1, 1 for 3); LRU hits nothing.
TEST(Sim, BeladyMatchesTheKnownOptimumOnAHandMadeSequence) {
  Trace t = one_layer_trace({0, 1, 2, 0, 1, 3, 0, 1}, 4);
  ReplayStream st = build_stream({&t}, 1, 0);
  ASSERT_EQ(st.requests.size(), 8u);
  SimResult b = run_belady(st, 2, IoModel{});
  EXPECT_EQ(b.accesses, 8u);
  EXPECT_EQ(b.hits, 2u);
  EXPECT_EQ(b.stall_free, 2u);
  EXPECT_EQ(replay(st, "lru", 2, false).hits, 0u);
}

TEST(Sim, BeladyNeverEvictsTheCurrentRequest) {
  // Two experts per request, room for two: each request must keep both of its own.
  TraceShape shape{1, 4, 2, 3};
  auto t = Trace::from_ids("pairs", shape, {}, {0, 1, 2, 3, 0, 1});
  ASSERT_TRUE(t.ok());
  ReplayStream st = build_stream({&*t}, 1, 0);
  EXPECT_EQ(run_belady(st, 2, IoModel{}).hits, 0u);
  EXPECT_EQ(run_belady(st, 4, IoModel{}).hits, 2u);
}

TEST(Sim, WorkersReplayDifferentSequencesInterleaved) {
  TraceShape shape{2, 4, 1, 4};
  std::vector<TraceSequence> seqs{{0, 2, ""}, {2, 2, ""}};
  auto t = Trace::from_ids("two", shape, seqs, {0, 1, 2, 3, 3, 2, 1, 0});
  ASSERT_TRUE(t.ok());
  ReplayStream st = build_stream({&*t}, 2, 0);
  EXPECT_EQ(st.workers, 2u);
  EXPECT_EQ(st.steps, 4u);
  ASSERT_EQ(st.requests.size(), 8u);
  // Round robin per layer: w0 L0, w1 L0, w0 L1, w1 L1, ...
  EXPECT_EQ(st.requests[0].worker, 0u);
  EXPECT_EQ(st.requests[1].worker, 1u);
  EXPECT_EQ(st.experts[st.requests[0].first], 0u);  // step 0 layer 0
  EXPECT_EQ(st.experts[st.requests[1].first], 3u);  // step 2 layer 0
  EXPECT_EQ(st.requests[2].layer, 1u);
  EXPECT_TRUE(st.requests[3].last_layer);
}

// Layer 1's expert always mirrors layer 0's, and layer 0 cycles through all experts, so
// a demand cache of 4 never hits, but the learned predictor reads layer 1 in time.
TEST(Sim, PrefetchFromTheLearnedPredictorArrivesInTime) {
  const uint32_t kSteps = 200;
  TraceShape shape{2, 8, 1, kSteps};
  std::vector<uint8_t> ids;
  for (uint32_t s = 0; s < kSteps; ++s) {
    ids.push_back(s % 8);
    ids.push_back((s % 8 + 3) % 8);
  }
  auto t = Trace::from_ids("mirror", shape, {}, ids);
  ASSERT_TRUE(t.ok());
  ReplayStream st = build_stream({&*t}, 1, 0);
  IoModel io;
  io.compute_s = 1.0;  // far longer than one read
  SimResult lru = replay(st, "lru", 4, false, io);
  SimResult def = replay(st, "default", 4, true, io);
  EXPECT_EQ(lru.hits, 0u);
  EXPECT_GT(def.prefetches_used, kSteps / 4);
  EXPECT_GT(def.stall_free_rate(), 0.2);  // lru: 0
}

bool have_trace(const std::string& prefix) {
  return std::filesystem::exists(prefix + ".json") &&
         std::filesystem::exists(prefix + ".experts.u8.zst");
}

// ../shared/traces/README.md: LRU on the first 5,000 steps of gpt-oss-20b, one worker,
// hits 0.350 / 0.610 / 0.893 at 96 / 192 / 384 experts.
TEST(Sim, LruReproducesTheReferenceOnGptOss20b) {
  const std::string prefix = MOEPOOL_SOURCE_DIR "/../shared/traces/gpt-oss-20b";
  if (!have_trace(prefix)) GTEST_SKIP() << "no real trace at " << prefix;
  auto t = Trace::load(prefix);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  ReplayStream st = build_stream({&*t}, 1, 5000);
  ASSERT_EQ(st.steps, 5000u);
  const uint64_t caps[] = {96, 192, 384};
  const double refs[] = {0.350, 0.610, 0.893};
  for (int i = 0; i < 3; ++i) {
    SimResult lru = replay(st, "lru", caps[i], false);
    EXPECT_NEAR(lru.hit_rate(), refs[i], 0.0006) << caps[i];
    EXPECT_DOUBLE_EQ(lru.stall_free_rate(), lru.hit_rate());
    SimResult min = run_belady(st, caps[i], IoModel{});
    EXPECT_GE(min.hit_rate(), replay(st, "default", caps[i], false).hit_rate());
  }
}

}  // namespace
}  // namespace moepool::sim
