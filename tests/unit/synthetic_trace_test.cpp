// Tests of the synthetic routing-trace generator: determinism, validity, and that each
// locality knob moves its measure the right way.
#include "common/synthetic_trace.h"

#include <gtest/gtest.h>

#include <cstring>
#include <string>

#include "common/trace_locality.h"

namespace moepool {
namespace {

Trace make(const std::string& spec_text) {
  auto spec = parse_synthetic_spec(spec_text);
  EXPECT_TRUE(spec.ok()) << spec_text << ": " << spec.status().to_string();
  auto t = generate_synthetic_trace(*spec);
  EXPECT_TRUE(t.ok()) << spec_text << ": " << t.status().to_string();
  return std::move(t).value();
}

bool same_ids(const Trace& a, const Trace& b) {
  if (a.shape().steps != b.shape().steps || a.step_stride() != b.step_stride()) return false;
  return std::memcmp(a.step(0), b.step(0), a.shape().steps * a.step_stride()) == 0;
}

TEST(SyntheticTrace, SameSeedGivesSameTrace) {
  Trace a = make("deepseek,steps=200,seed=5");
  Trace b = make("deepseek,steps=200,seed=5");
  EXPECT_TRUE(same_ids(a, b));
  Trace c = make("deepseek,steps=200,seed=6");
  EXPECT_FALSE(same_ids(a, c));
}

// A fixed seed's trace never changes: tools and results that cite a spec stay valid.
// These ids were recorded from this implementation; if they change, every published
// synthetic figure moved with them.
TEST(SyntheticTrace, OutputIsStableAcrossVersions) {
  Trace t = make("layers=2,experts=16,top_k=2,steps=3,skew=1,reuse=0.5,xlayer=0.5,seed=42");
  const uint8_t want[] = {8, 15, 1, 9, 15, 9, 5, 1, 8, 3, 1, 5};
  ASSERT_EQ(t.shape().steps * t.step_stride(), sizeof want);
  for (size_t i = 0; i < sizeof want; ++i) EXPECT_EQ(t.step(0)[i], want[i]) << "id " << i;
}

TEST(SyntheticTrace, NoDuplicateExpertsWithinAStepLayer) {
  for (const char* spec : {"deepseek,steps=300", "qwen3,steps=100", "mixtral,steps=300",
                           "layers=4,experts=8,top_k=8,steps=50,skew=3",
                           "layers=6,experts=256,top_k=16,steps=100,skew=4,reuse=0.9,xlayer=0.9",
                           "layers=3,experts=5,top_k=4,steps=200,skew=0,reuse=1,xlayer=1"}) {
    Trace t = make(spec);
    const uint32_t k = t.shape().top_k;
    for (uint64_t s = 0; s < t.shape().steps; ++s) {
      for (uint32_t l = 0; l < t.shape().layers; ++l) {
        const uint8_t* ids = t.step_layer(s, l);
        for (uint32_t i = 0; i < k; ++i) {
          ASSERT_LT(ids[i], t.shape().experts) << spec;
          for (uint32_t j = i + 1; j < k; ++j)
            ASSERT_NE(ids[i], ids[j]) << spec << " step " << s << " layer " << l;
        }
      }
    }
  }
}

TEST(SyntheticTrace, SkewKnobRaisesTopShare) {
  auto low = measure_locality(make("layers=8,experts=64,top_k=4,steps=4000,skew=0.2"));
  auto high = measure_locality(make("layers=8,experts=64,top_k=4,steps=4000,skew=1.0"));
  EXPECT_GT(high.top10_share, low.top10_share + 0.1);
  EXPECT_GT(high.top25_share, low.top25_share + 0.1);
}

TEST(SyntheticTrace, ReuseKnobRaisesMeasuredReuse) {
  auto low = measure_locality(make("layers=8,experts=64,top_k=4,steps=4000,reuse=0.1"));
  auto high = measure_locality(make("layers=8,experts=64,top_k=4,steps=4000,reuse=0.6"));
  EXPECT_GT(high.reuse, low.reuse + 0.2);
}

TEST(SyntheticTrace, XlayerKnobRaisesMeasuredXlayer) {
  auto low = measure_locality(make("layers=8,experts=64,top_k=4,steps=4000,skew=0.3,xlayer=0.1"));
  auto high = measure_locality(make("layers=8,experts=64,top_k=4,steps=4000,skew=0.3,xlayer=0.8"));
  EXPECT_GT(high.xlayer, low.xlayer + 0.2);
}

TEST(SyntheticTrace, ZeroKnobsLookUniform) {
  auto loc =
      measure_locality(make("layers=8,experts=32,top_k=4,steps=8000,skew=0,reuse=0,xlayer=0"));
  EXPECT_NEAR(loc.top25_share, 0.25, 0.02);
  EXPECT_NEAR(loc.reuse, 4.0 / 32, 0.02);
}

TEST(SyntheticTrace, SplitsIntoSequences) {
  Trace t = make("mixtral,steps=250,seq=100");
  ASSERT_EQ(t.sequences().size(), 3u);
  EXPECT_EQ(t.sequences()[1].offset, 100u);
  EXPECT_EQ(t.sequences()[2].n_tokens, 50u);
  EXPECT_EQ(t.sequences()[2].dataset, "synthetic");
}

TEST(SyntheticSpec, ParsesPresetsAndOverrides) {
  auto d = parse_synthetic_spec("deepseek");
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->layers, 58u);
  EXPECT_EQ(d->experts, 256u);
  EXPECT_EQ(d->top_k, 8u);
  auto q = parse_synthetic_spec("qwen3,seed=7,steps=10,reuse=0.25");
  ASSERT_TRUE(q.ok()) << q.status().to_string();
  EXPECT_EQ(q->preset, "qwen3");
  EXPECT_EQ(q->layers, 94u);
  EXPECT_EQ(q->experts, 128u);
  EXPECT_EQ(q->seed, 7u);
  EXPECT_EQ(q->steps, 10u);
  EXPECT_DOUBLE_EQ(q->reuse, 0.25);
  auto c =
      parse_synthetic_spec("layers=24,experts=32,top_k=4,skew=0.8,reuse=0.4,xlayer=0.3,seed=1");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->preset, "custom");
  EXPECT_EQ(c->layers, 24u);
  EXPECT_DOUBLE_EQ(c->xlayer, 0.3);
}

TEST(SyntheticSpec, ToStringRoundTrips) {
  auto a = parse_synthetic_spec("gpt-oss,steps=77,seed=3,seq=10,skew=1.25");
  ASSERT_TRUE(a.ok());
  auto b = parse_synthetic_spec(to_string(*a));
  ASSERT_TRUE(b.ok()) << to_string(*a) << ": " << b.status().to_string();
  EXPECT_EQ(to_string(*a), to_string(*b));
  EXPECT_EQ(b->preset, "gpt-oss");
  EXPECT_DOUBLE_EQ(b->skew, 1.25);
  EXPECT_EQ(b->sequence_tokens, 10u);
}

TEST(SyntheticSpec, RejectsBadSpecs) {
  struct Case {
    const char* spec;
    const char* message_part;
  };
  for (const Case& c :
       {Case{"", "unknown preset"}, Case{"llama", "unknown preset \"llama\""},
        Case{"deepseek,colour=3", "unknown key \"colour\""},
        Case{"layers=abc", "layers=\"abc\" is not an integer"},
        Case{"reuse=1.5", "reuse must be in [0, 1]"},
        Case{"xlayer=-0.1", "xlayer must be in [0, 1]"}, Case{"experts=300", "experts=300"},
        Case{"experts=8,top_k=9", "top_k=9"}, Case{"steps=0", "steps must be at least 1"},
        Case{"layers=2,deepseek", "is not key=value"}}) {
    auto r = parse_synthetic_spec(c.spec);
    ASSERT_FALSE(r.ok()) << c.spec;
    EXPECT_NE(r.status().message().find(c.message_part), std::string::npos)
        << c.spec << ": " << r.status().message();
  }
}

}  // namespace
}  // namespace moepool
