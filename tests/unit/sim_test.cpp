// moepool-sim's replay core (tools/sim/): the replay stream, Belady's MIN, the policy
// replay with simulated I/O, synthetic sources, the static-split baseline of the
// multi-model mode, and LRU on the real gpt-oss-20b trace against the reference numbers
// of ../shared/traces/README.md.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "common/synthetic_trace.h"
#include "common/trace.h"
#include "daemon/policy.h"
#include "tools/sim/belady.h"
#include "tools/sim/cache_sim.h"
#include "tools/sim/policy_cost.h"
#include "tools/sim/replay_stream.h"
#include "tools/sim/sim_sources.h"
#include "tools/sim/static_split.h"

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

// Layer 0 cycles through all experts, layers 1 and 2 always pick expert 0, and layer 3
// mirrors layer 0: only a guess made three layers ahead (from layer 0) knows layer 3's
// expert, and three layers of compute are longer than a read, so it arrives in time.
TEST(Sim, PrefetchSeveralLayersAheadFindsWhatTheNextLayerCannotTell) {
  const uint32_t kSteps = 300;
  TraceShape shape{4, 8, 1, kSteps};
  std::vector<uint8_t> ids;
  for (uint32_t s = 0; s < kSteps; ++s)
    for (uint8_t e : {uint8_t(s % 8), uint8_t(0), uint8_t(0), uint8_t((s + 3) % 8)}) ids.push_back(e);
  auto t = Trace::from_ids("ahead", shape, {}, ids);
  ASSERT_TRUE(t.ok());
  ReplayStream st = build_stream({&*t}, 1, 0);
  IoModel io;
  io.compute_s = 1e-3;  // a read: 13.2 MB / 6 GB/s + 0.1 ms = 2.3 ms
  auto run = [&](uint32_t distance) {
    auto p = make_policy("default");
    PrefetchOptions o;
    o.enabled = true;
    o.distance = distance;
    return run_policy(st, **p, 6, io, o);
  };
  SimResult one = run(1), three = run(3);
  EXPECT_LT(one.stall_free_rate(), 0.55);  // layers 1 and 2
  EXPECT_GT(three.stall_free_rate(), 0.7)  // and layer 3, after a few steps of learning
      << "prefetches " << three.prefetches << ", used " << three.prefetches_used;
}

// Layer 1 mirrors layer 0, which cycles, and a read takes longer than a layer: every
// guess for layer 1 is right but late. With the deadline the simulator skips them (they
// would evict for nothing stall-free), so it reads no more than demand alone.
TEST(Sim, PrefetchDeadlineSkipsReadsThatCannotArriveInTime) {
  const uint32_t kSteps = 200;
  TraceShape shape{2, 8, 1, kSteps};
  std::vector<uint8_t> ids;
  for (uint32_t s = 0; s < kSteps; ++s) {
    ids.push_back(s % 8);
    ids.push_back((s % 8 + 3) % 8);
  }
  auto t = Trace::from_ids("late", shape, {}, ids);
  ASSERT_TRUE(t.ok());
  ReplayStream st = build_stream({&*t}, 1, 0);
  IoModel io;
  io.compute_s = 0.5e-3;  // a read takes 2.3 ms
  auto run = [&](bool deadline) {
    auto p = make_policy("default");
    PrefetchOptions o;
    o.enabled = true;
    o.deadline = deadline;
    return run_policy(st, **p, 4, io, o);
  };
  SimResult late = run(false), skipped = run(true);
  EXPECT_GT(late.prefetches, kSteps / 2);
  EXPECT_LT(skipped.prefetches, late.prefetches / 4);
  EXPECT_GE(skipped.stall_free_rate(), late.stall_free_rate());
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

TEST(Sim, PolicyCostReplaysTheDaemonsCallsWithTheSameMisses) {
  // The cost harness's demand-only cache misses exactly where the simulator's does, and
  // each timed replay of its call log makes the same decisions (else it fails).
  auto t = generate_synthetic_trace(*parse_synthetic_spec("layers=6,experts=16,top_k=2,steps=300"));
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  ReplayStream st = build_stream({&*t}, 1, 0);
  for (const char* policy : {"lru", "default"}) {
    auto c = measure_policy_cost(st, policy, 24, IoModel{}, 2);
    ASSERT_TRUE(c.ok()) << c.status().to_string();
    SimResult r = replay(st, policy, 24, false);
    EXPECT_EQ(c->accesses, r.accesses) << policy;
    EXPECT_EQ(c->misses, r.accesses - r.hits) << policy;
    EXPECT_EQ(c->ns_per_access.size(), 2u);
    EXPECT_GT(c->median_ns(), 0.0);
  }
  EXPECT_FALSE(measure_policy_cost(st, "nope", 24, IoModel{}, 1).ok());
  EXPECT_FALSE(measure_policy_cost(st, "lru", 24, IoModel{}, 0).ok());
}

TEST(Sim, SelectSequencesKeepsTheRangeInOrder) {
  // Three sequences of 2, 1 and 3 steps of a one-layer, top-1 trace.
  TraceShape shape{1, 8, 1, 6};
  auto t = Trace::from_ids("seqs", shape, {{0, 2, ""}, {2, 1, ""}, {3, 3, ""}},
                           {0, 1, 2, 3, 4, 5});
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  auto r = parse_sequence_range("1-");
  ASSERT_TRUE(r.ok());
  auto sub = select_sequences(*t, *r);
  ASSERT_TRUE(sub.ok()) << sub.status().to_string();
  ASSERT_EQ(sub->sequences().size(), 2u);
  EXPECT_EQ(sub->shape().steps, 4u);
  EXPECT_EQ(sub->sequences()[1].offset, 1u);
  EXPECT_EQ(*sub->step(0), 2);
  EXPECT_EQ(*sub->step(3), 5);
  auto one = select_sequences(*t, *parse_sequence_range("0-0"));
  ASSERT_TRUE(one.ok());
  EXPECT_EQ(one->shape().steps, 2u);
  EXPECT_EQ(parse_sequence_range("2").value().last, 2u);
  EXPECT_FALSE(parse_sequence_range("3-1").ok());
  EXPECT_FALSE(parse_sequence_range("a-").ok());
  EXPECT_FALSE(select_sequences(*t, *parse_sequence_range("3-")).ok());
}

void expect_rates_in_range(const SimResult& r, const char* what) {
  EXPECT_GT(r.accesses, 0u) << what;
  EXPECT_GE(r.hit_rate(), 0.0) << what;
  EXPECT_LE(r.hit_rate(), 1.0) << what;
  EXPECT_GE(r.stall_free_rate(), 0.0) << what;
  EXPECT_LE(r.stall_free_rate(), r.hit_rate()) << what;
  EXPECT_GT(r.bytes_per_step(), 0.0) << what;
}

TEST(Sim, SyntheticSourceGivesSaneRatesAndBeladyBeatsLru) {
  auto t = make_synthetic_source("gpt-oss,steps=300", 0, 1);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->shape().steps, 300u);  // the spec's steps= when --steps is not given
  ReplayStream st = build_stream({&*t}, 1, 0);
  ASSERT_EQ(st.total_experts, 24u * 32u);
  const uint64_t cap = st.total_experts / 4;
  SimResult def = replay(st, "default", cap, true);
  SimResult lru = replay(st, "lru", cap, false);
  SimResult min = run_belady(st, cap, IoModel{});
  expect_rates_in_range(def, "default");
  expect_rates_in_range(lru, "lru");
  expect_rates_in_range(min, "belady");
  EXPECT_GE(min.hit_rate(), lru.hit_rate());
  EXPECT_GE(min.hit_rate(), replay(st, "default", cap, false).hit_rate());
}

TEST(Sim, SyntheticSourceGivesEachWorkerItsOwnSequence) {
  auto t = make_synthetic_source("mixtral", 50, 3);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->shape().steps, 150u);  // --steps is per worker
  ASSERT_EQ(t->sequences().size(), 3u);
  ReplayStream st = build_stream({&*t}, 3, 50);
  EXPECT_EQ(st.workers, 3u);
  EXPECT_EQ(st.steps, 150u);
  auto d = make_synthetic_source("qwen3", 0, 1);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->shape().steps, kDefaultSyntheticSteps);
  EXPECT_EQ(d->shape().experts, 128u);
}

TEST(Sim, SyntheticSpecErrorsNameTheKey) {
  auto t = make_synthetic_source("gpt-oss,bogus=1", 10, 1);
  ASSERT_FALSE(t.ok());
  EXPECT_NE(t.status().to_string().find("bogus"), std::string::npos) << t.status().to_string();
}

// One model: the only split gives it the whole budget, so it equals the plain replay.
TEST(Sim, StaticSplitOfOneModelIsThePlainReplay) {
  auto t = make_synthetic_source("gpt-oss,steps=100", 0, 1);
  ASSERT_TRUE(t.ok());
  ReplayStream st = build_stream({&*t}, 1, 0);
  StaticSplitOptions o;
  o.prefetch.enabled = true;
  auto s = best_static_split({&*t}, 100, IoModel{}, o);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  ASSERT_EQ(s->capacities, std::vector<uint64_t>{100});
  SimResult plain = replay(st, "default", 100, true);
  EXPECT_EQ(s->total.hits, plain.hits);
  EXPECT_EQ(s->total.stall_free, plain.stall_free);
  EXPECT_EQ(s->total.bytes_read, plain.bytes_read);
}

// A busy model and an idle-ish one (a tenth of the steps, flatter popularity): once the
// idle one stops, the shared cache gives its room to the busy one, a static split cannot.
TEST(Sim, SharedBudgetBeatsTheBestStaticSplitWhenOneModelIsIdleIsh) {
  auto busy = make_synthetic_source("gpt-oss,steps=600,skew=0.9", 0, 1);
  auto idle = make_synthetic_source("mixtral,steps=60,skew=0.2,seed=7", 0, 1);
  ASSERT_TRUE(busy.ok() && idle.ok());
  std::vector<const Trace*> tp{&*busy, &*idle};
  ReplayStream st = build_stream(tp, 1, 0);
  const uint64_t cap = st.total_experts / 4;
  SimResult shared = replay(st, "default", cap, true);
  StaticSplitOptions o;
  o.prefetch.enabled = true;
  auto split = best_static_split(tp, cap, IoModel{}, o);
  ASSERT_TRUE(split.ok()) << split.status().to_string();
  ASSERT_EQ(split->capacities.size(), 2u);
  EXPECT_EQ(split->capacities[0] + split->capacities[1], cap);
  EXPECT_GE(split->capacities[1], 2u);  // mixtral's top_k
  EXPECT_EQ(split->total.accesses, shared.accesses);
  EXPECT_EQ(split->total.steps, shared.steps);
  expect_rates_in_range(split->total, "static_split");
  EXPECT_GE(shared.hit_rate(), split->total.hit_rate() - 0.005);
}

TEST(Sim, StaticSplitFailsWhenTheBudgetCannotHoldOneRequestPerModel) {
  auto a = make_synthetic_source("gpt-oss,steps=10", 0, 1);
  auto b = make_synthetic_source("gpt-oss,steps=10,seed=2", 0, 1);
  ASSERT_TRUE(a.ok() && b.ok());
  auto s = best_static_split({&*a, &*b}, 6, IoModel{}, StaticSplitOptions{});
  EXPECT_FALSE(s.ok());
}

}  // namespace
}  // namespace moepool::sim
