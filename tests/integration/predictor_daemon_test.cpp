// The daemon's own predictor end to end: a worker replays a repeating routing pattern
// through a pool too small for it; with prefetch.predictor on, the daemon prefetches the
// next layer's experts (predicted_prefetches > 0) and the hit rate beats the run without.
#include <grpcpp/grpcpp.h>

#include <fstream>

#include "moepool/v1/moepool.grpc.pb.h"
#include "tests/integration/daemon_harness.h"

namespace moepool::testing {
namespace {

constexpr uint32_t kLayers = 4, kExperts = 16, kSteps = 8, kCycles = 6;

// Step s routes layer l to two experts; within a layer the steps' pairs are disjoint, so
// layer l's pair names the step and with it layer l+1's pair.
std::vector<uint32_t> route(uint32_t step, uint32_t layer) {
  uint32_t base = 2 * step + 4 * layer;
  return {base % kExperts, (base + 1) % kExperts};
}

class PredictorTest : public DaemonFixture {
 protected:
  // Starts the daemon with the predictor on or off (warm-up off: each run starts cold),
  // replays the pattern, returns the model's stats and stops the daemon.
  ModelStats replay(const std::string& model, bool predictor) {
    std::string config = (dir_ / "moepoold.toml").string();
    std::ofstream(config) << "[prefetch]\npredictor = " << (predictor ? "true" : "false")
                          << "\nmin_probability = 0.5\n[popularity]\nwarmup = false\n";
    start_daemon("8M", {"--config", config});
    ModelStats out;
    {
      auto c = connect("replay");
      auto m = c->open_model(model);
      EXPECT_TRUE(m.ok());
      if (!m.ok()) return out;
      for (uint32_t cycle = 0; cycle < kCycles; ++cycle)
        for (uint32_t s = 0; s < kSteps; ++s)
          for (uint32_t l = 0; l < kLayers; ++l) {
            std::vector<uint32_t> e = route(s, l);
            auto leases = c->acquire(m->id, l, e);
            EXPECT_TRUE(leases.ok()) << leases.status().to_string();
            if (leases.ok()) EXPECT_TRUE(c->release(*leases).ok());
          }
      auto st = c->stats();
      EXPECT_TRUE(st.ok());
      if (st.ok() && !st->models.empty()) out = st->models[0];
    }
    daemon_.signal(SIGTERM);
    EXPECT_EQ(daemon_.wait(), 0);
    return out;
  }
};

double hit_rate(const ModelStats& s) {
  return s.hits + s.misses ? static_cast<double>(s.hits) / (s.hits + s.misses) : 0;
}

TEST_F(PredictorTest, PredictedPrefetchesRaiseTheHitRateOfARepeatingPattern) {
  std::string model = synth("m.gguf", {"--layers", "4", "--experts", "16", "--embd", "256",
                                       "--ffn", "512", "--type", "q8_0"});
  ModelStats off = replay(model, false);
  ModelStats on = replay(model, true);
  const uint64_t demanded = uint64_t{kCycles} * kSteps * kLayers * 2;
  EXPECT_EQ(off.hits + off.misses, demanded);
  EXPECT_EQ(on.hits + on.misses, demanded);
  EXPECT_EQ(off.predicted_prefetches, 0u);
  EXPECT_GT(on.predicted_prefetches, 0u);
  EXPECT_GT(hit_rate(on), hit_rate(off))
      << "on: " << on.hits << " hits, " << on.predicted_prefetches << " predicted prefetches; "
      << "off: " << off.hits << " hits";
  std::printf("hit rate without the predictor %.3f, with it %.3f (%llu predicted prefetches)\n",
              hit_rate(off), hit_rate(on), (unsigned long long)on.predicted_prefetches);
}

TEST_F(PredictorTest, HintProbabilitiesAreCheckedAndPassedToTheCache) {
  std::string model = synth("m.gguf", {"--layers", "4", "--experts", "16", "--embd", "256",
                                       "--ffn", "512", "--type", "q8_0"});
  start_daemon("16M");
  auto c = connect();
  auto m = c->open_model(model);
  ASSERT_TRUE(m.ok());
  std::vector<uint32_t> experts = {3, 4};
  std::vector<float> p = {1.0f, 0.9f};
  auto queued = c->prefetch(m->id, 1, experts, p);
  ASSERT_TRUE(queued.ok()) << queued.status().to_string();
  EXPECT_GE(*queued, 1u) << "a certain hint takes a free slot";
  std::vector<float> short_p = {0.5f};
  auto mismatch = c->prefetch(m->id, 1, experts, short_p);
  EXPECT_EQ(mismatch.status().code(), Code::kInvalidArgument);

  // The daemon checks them itself (a client other than libmoepool may send anything).
  auto channel = grpc::CreateChannel("unix:" + socket_, grpc::InsecureChannelCredentials());
  auto stub = v1::Worker::NewStub(channel);
  struct Case {
    std::vector<float> p;
    std::string error;
  };
  for (const Case& k : std::vector<Case>{{{0.5f}, "1 given for 2 experts"},
                                         {{0.5f, 1.5f}, "probabilities[1]"},
                                         {{-0.1f, 0.5f}, "outside [0, 1]"}}) {
    v1::PrefetchRequest req;
    req.set_session_id(c->session_id());
    req.set_model_id(m->id);
    req.set_layer(2);
    for (uint32_t e : experts) req.add_experts(e);
    for (float f : k.p) req.add_probabilities(f);
    v1::PrefetchReply reply;
    grpc::ClientContext ctx;
    grpc::Status gs = stub->Prefetch(&ctx, req, &reply);
    EXPECT_EQ(gs.error_code(), grpc::StatusCode::INVALID_ARGUMENT) << gs.error_message();
    EXPECT_NE(gs.error_message().find(k.error), std::string::npos) << gs.error_message();
  }
  auto st = c->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->models[0].prefetches, *queued) << "refused hints started nothing";
}

}  // namespace
}  // namespace moepool::testing
