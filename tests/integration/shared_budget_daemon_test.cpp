// One budget shared by two models, end to end with real processes: a real moepoold,
// real moepool-bench workers replaying routing on two models, quotas set with the real
// moepoolctl, usage read back through the client's stats. Shows lending (a model borrows
// an idle model's share), reclaiming (the owner takes it back when it comes back), the
// maximum (a capped model evicts its own while the other keeps what it holds) and the
// minimum (kept while the model is idle).
#include "tests/integration/daemon_harness.h"

namespace moepool::testing {
namespace {

// q8_0 256 x 256 per projection: 68 KiB, so every expert takes a slot of about 204 KiB
// and the 8 MiB pool holds about 40. The two models differ in layer count, hence in name.
std::vector<std::string> model_args(int layers) {
  return {"--layers", std::to_string(layers), "--experts", "32", "--embd", "256",
          "--ffn", "256", "--type", "q8_0"};
}

class SharedBudgetDaemonTest : public DaemonFixture {
 protected:
  // Replays `steps` steps of a synthetic trace over the model's layers in one worker.
  void bench(const std::string& model, int layers, int steps, int seed) {
    auto [rc, out] = run({bin("moepool-bench"), "--socket", socket_, "--model", model,
                          "--synthetic",
                          "layers=" + std::to_string(layers) + ",experts=32,top_k=4,seed=" +
                              std::to_string(seed),
                          "--steps", std::to_string(steps)});
    ASSERT_EQ(rc, 0) << out;
  }
  void ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {bin("moepoolctl"), "--socket", socket_});
    auto [rc, out] = run(args);
    ASSERT_EQ(rc, 0) << out;
  }
  ModelStats stats_of(Client& c, const std::string& name) {
    auto st = c.stats();
    EXPECT_TRUE(st.ok()) << st.status().to_string();
    if (st.ok())
      for (const ModelStats& m : st->models)
        if (m.name == name) return m;
    ADD_FAILURE() << "no model " << name << " in stats";
    return {};
  }
};

TEST_F(SharedBudgetDaemonTest, IdleShareIsLentReclaimedCappedAndTheMinimumKept) {
  const std::string path_a = synth("a.gguf", model_args(4));
  const std::string path_b = synth("b.gguf", model_args(5));
  start_daemon("8M");
  auto c = connect();
  auto a = c->open_model(path_a);
  auto b = c->open_model(path_b);
  ASSERT_TRUE(a.ok() && b.ok());
  ASSERT_NE(a->name, b->name);
  const uint64_t min_a = 2 << 20, max_b = 4200 << 10;
  ctl({"quota", a->name, "--min", "2M"});     // kept even when idle
  ctl({"quota", b->name, "--max", "4200K"});  // never more, pins included

  // a alone: b has demanded nothing, so a borrows the whole pool.
  bench(path_a, 4, 40, 1);
  ModelStats first = stats_of(*c, a->name);
  ASSERT_GT(first.resident_experts, 0u);
  const uint64_t stride = first.used_bytes / first.resident_experts;
  const uint64_t slots = (8 << 20) / stride;
  const uint64_t min_slots = (min_a + stride - 1) / stride, max_slots = max_b / stride;
  ASSERT_GT(max_slots, 4u);
  EXPECT_EQ(first.used_bytes, slots * stride);
  EXPECT_EQ(stats_of(*c, b->name).used_bytes, 0u);

  // b runs: it takes memory from a, but only up to its maximum; a keeps the rest.
  bench(path_b, 5, 40, 2);
  ModelStats sa = stats_of(*c, a->name), sb = stats_of(*c, b->name);
  EXPECT_EQ(sb.used_bytes, max_slots * stride);
  EXPECT_EQ(sa.used_bytes, (slots - max_slots) * stride);
  EXPECT_GT(sb.evictions, 0u) << "at its maximum b evicts its own experts";

  // Lift b's maximum: a is idle now, so b reclaims everything but a's minimum.
  ctl({"quota", b->name, "--max", "0"});
  bench(path_b, 5, 40, 3);
  sa = stats_of(*c, a->name);
  sb = stats_of(*c, b->name);
  EXPECT_FALSE(sa.active);
  EXPECT_EQ(sa.used_bytes, min_slots * stride) << "a keeps its 2 MiB minimum, no more";
  EXPECT_EQ(sb.used_bytes, (slots - min_slots) * stride);

  // a comes back while b idles: a reclaims the pool from b, which has no minimum.
  bench(path_a, 4, 40, 4);
  sa = stats_of(*c, a->name);
  sb = stats_of(*c, b->name);
  EXPECT_TRUE(sa.active);
  EXPECT_FALSE(sb.active);
  EXPECT_EQ(sa.used_bytes, slots * stride);
  EXPECT_EQ(sb.used_bytes, 0u);
  EXPECT_EQ(sa.pinned_bytes + sb.pinned_bytes, 0u) << "the workers are gone: no pin is left";
}

}  // namespace
}  // namespace moepool::testing
