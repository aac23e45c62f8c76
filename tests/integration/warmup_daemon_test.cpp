// Popularity and warm-up end to end: a first moepoold run serves acquires and stops
// cleanly, leaving the model's popularity in the state directory; a second run, on the
// model's first open, reads the hot experts back in the background, so the first acquires
// of those experts are hits. A malformed state file is ignored, then replaced.
#include <fstream>
#include <sstream>

#include "daemon/popularity_store.h"
#include "tests/integration/daemon_harness.h"

namespace moepool::testing {
namespace {

std::vector<std::string> small_model() {
  return {"--layers", "4", "--experts", "16", "--embd", "256", "--ffn", "512", "--type", "q8_0"};
}

std::string hex16(uint64_t v) {
  char buf[20];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(v));
  return buf;
}

std::string slurp(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

class WarmupTest : public DaemonFixture {
 protected:
  fs::path state_file(uint64_t id) const { return dir_ / "state" / (hex16(id) + ".popularity"); }

  // Runs test_worker: `repeat` acquires of `experts` of `layer`, bytes verified.
  void work(const std::string& model, uint32_t layer, const std::string& experts, int repeat) {
    Process w({test_bin("test_worker"), socket_, model, std::to_string(layer), experts,
               "--repeat", std::to_string(repeat)});
    std::string out = w.read_all();
    EXPECT_EQ(w.wait(), 0) << out;
    EXPECT_NE(out.find("ok verified"), std::string::npos) << out;
  }
  void stop_daemon() {
    daemon_.signal(SIGTERM);
    EXPECT_EQ(daemon_.wait(), 0) << "moepoold stops cleanly";
  }
  // Polls the model's stats until its warm-up is no longer running (or 10 s passed).
  ModelStats wait_warmup(Client& c, uint64_t id) {
    ModelStats last;
    for (int i = 0; i < 1000; ++i) {
      auto st = c.stats();
      EXPECT_TRUE(st.ok());
      for (const ModelStats& m : st->models)
        if (m.model_id == id) last = m;
      if (last.warmup_state.rfind("done", 0) == 0) return last;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll interval
    }
    ADD_FAILURE() << "warm-up never finished; state '" << last.warmup_state << "'";
    return last;
  }
  // Opens `model` in a session of its own (closed again) and returns its id; 0 on failure.
  uint64_t open_id(const std::string& model) {
    auto c = connect();
    if (!c) return 0;
    auto m = c->open_model(model);
    EXPECT_TRUE(m.ok()) << m.status().to_string();
    return m.ok() ? m->id : 0;
  }
};

TEST_F(WarmupTest, SecondRunWarmsTheHotExpertsSoTheirFirstAcquiresHit) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("16M");
  const uint64_t id = open_id(model);
  ASSERT_NE(id, 0u);
  work(model, 1, "3,5,7", 10);  // hot
  work(model, 2, "0,9", 10);    // hot
  work(model, 3, "11", 1);      // lukewarm
  stop_daemon();
  ASSERT_TRUE(fs::exists(state_file(id))) << "saved at shutdown";
  auto saved = decode_popularity(slurp(state_file(id)), id);
  ASSERT_TRUE(saved.ok()) << saved.status().to_string();
  EXPECT_EQ(saved->size(), 6u);

  start_daemon("16M");
  auto c = connect();
  auto m = c->open_model(model);
  ASSERT_TRUE(m.ok());
  ModelStats warmed = wait_warmup(*c, id);
  EXPECT_EQ(warmed.warmup_state, "done");
  EXPECT_EQ(warmed.warmup_planned_experts, 6u);
  EXPECT_EQ(warmed.warmup_loaded_experts, 6u);
  EXPECT_GT(warmed.warmup_bytes_read, 0u);
  EXPECT_EQ(warmed.hits + warmed.misses, 0u);

  std::vector<uint32_t> hot1 = {3, 5, 7}, hot2 = {0, 9};
  for (auto [layer, experts] : {std::pair{1u, hot1}, std::pair{2u, hot2}}) {
    auto leases = c->acquire(id, layer, experts);
    ASSERT_TRUE(leases.ok()) << leases.status().to_string();
    for (const Lease& l : *leases) EXPECT_TRUE(l.hit) << "layer " << layer << " expert " << l.expert;
    EXPECT_TRUE(c->release(*leases).ok());
  }
  auto st = c->stats();
  ASSERT_TRUE(st.ok());
  ASSERT_EQ(st->models.size(), 1u);
  EXPECT_EQ(st->models[0].hits, 5u);
  EXPECT_EQ(st->models[0].misses, 0u);

  // A second open of the same model in this daemon's life does not warm again.
  auto again = connect("again");
  ASSERT_TRUE(again->open_model(model).ok());
  auto st2 = again->stats();
  ASSERT_TRUE(st2.ok());
  EXPECT_EQ(st2->models[0].warmup_planned_experts, 6u);
}

TEST_F(WarmupTest, MalformedStateFileIsIgnoredAndReplaced) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("16M");
  const uint64_t id = open_id(model);
  ASSERT_NE(id, 0u);
  stop_daemon();
  fs::create_directories(dir_ / "state");
  std::ofstream(state_file(id)) << "moepool-popularity 1\nmodel " << hex16(id)
                                << "\nname x\n1 3 not-a-number\nend 1\n";
  start_daemon("16M");
  {
    auto c = connect();
    ASSERT_TRUE(c->open_model(model).ok()) << "a bad state file never fails an open";
    std::vector<uint32_t> e = {4};
    auto leases = c->acquire(id, 0, e);
    ASSERT_TRUE(leases.ok()) << leases.status().to_string();
    EXPECT_FALSE((*leases)[0].hit);
    EXPECT_TRUE(c->release(*leases).ok());
    auto st = c->stats();
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->models[0].warmup_planned_experts, 0u);
  }
  stop_daemon();
  auto saved = decode_popularity(slurp(state_file(id)), id);
  ASSERT_TRUE(saved.ok()) << "replaced by a good file: " << saved.status().to_string();
  EXPECT_EQ(*saved, (std::vector<PopularityEntry>{{0, 4, 1}}));
}

TEST_F(WarmupTest, PopularityIsSavedPeriodicallyWhileServing) {
  std::string model = synth("m.gguf", small_model());
  std::string config = (dir_ / "moepoold.toml").string();
  std::ofstream(config) << "[popularity]\nsave_interval = 1\n";
  start_daemon("16M", {"--config", config});
  uint64_t id = 0;
  {
    auto c = connect();
    auto m = c->open_model(model);
    ASSERT_TRUE(m.ok());
    id = m->id;
  }
  work(model, 0, "1,2", 1);
  bool saved = false;
  for (int i = 0; i < 1000 && !saved; ++i) {
    saved = fs::exists(state_file(id));
    if (!saved) std::this_thread::sleep_for(std::chrono::milliseconds(10));  // poll interval
  }
  EXPECT_TRUE(saved) << "no save within 10 s with save_interval = 1";
}

}  // namespace
}  // namespace moepool::testing
