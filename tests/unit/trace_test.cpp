// Tests of the routing-trace loader on the real traces and on malformed files.
#include "common/trace.h"

#include <gtest/gtest.h>
#include <unistd.h>
#include <zstd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "common/trace_locality.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

const std::string kTraceDir = MOEPOOL_SOURCE_DIR "/../shared/traces";

bool have_trace(const std::string& prefix) {
  return fs::exists(prefix + ".json") && fs::exists(prefix + ".experts.u8.zst");
}

std::string compress(const std::vector<uint8_t>& raw) {
  std::string out(ZSTD_compressBound(raw.size()), '\0');
  size_t n = ZSTD_compress(out.data(), out.size(), raw.data(), raw.size(), 3);
  EXPECT_FALSE(ZSTD_isError(n));
  out.resize(n);
  return out;
}

void write_file(const std::string& path, const std::string& bytes) {
  std::ofstream f(path, std::ios::binary | std::ios::trunc);
  f.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(f.good()) << path;
}

std::string header_json(int layers, int experts, int top_k, int tokens,
                        const std::string& sequences = R"([{"offset": 0, "n_tokens": 3}])") {
  return "{\"layers\": " + std::to_string(layers) + ", \"experts\": " + std::to_string(experts) +
         ", \"top_k\": " + std::to_string(top_k) + ", \"tokens\": " + std::to_string(tokens) +
         ", \"sequences\": " + sequences + "}";
}

// A scratch directory holding one small trace (3 steps, 2 layers, 4 experts, top-2) that
// each test breaks in its own way.
class TraceFiles : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/moepool_trace_test.XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    prefix_ = dir_ + "/t";
    ids_ = {0, 1, 2, 3, /*step 1*/ 1, 2, 3, 0, /*step 2*/ 2, 3, 0, 1};
    write_file(prefix_ + ".json", header_json(2, 4, 2, 3));
    write_file(prefix_ + ".experts.u8.zst", compress(ids_));
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string load_error(bool with_weights = false) {
    auto t = Trace::load(prefix_, with_weights);
    EXPECT_FALSE(t.ok());
    return t.ok() ? "" : t.status().message();
  }

  std::string dir_, prefix_;
  std::vector<uint8_t> ids_;
};

TEST_F(TraceFiles, LoadsAWellFormedTrace) {
  auto t = Trace::load(prefix_);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->shape().layers, 2u);
  EXPECT_EQ(t->shape().experts, 4u);
  EXPECT_EQ(t->shape().top_k, 2u);
  EXPECT_EQ(t->shape().steps, 3u);
  EXPECT_EQ(t->name(), "t");
  ASSERT_EQ(t->sequences().size(), 1u);
  EXPECT_EQ(t->step(1)[0], 1);
  EXPECT_EQ(t->step_layer(2, 1)[1], 1);
  EXPECT_FALSE(t->has_weights());
  EXPECT_EQ(t->step_weights(0), nullptr);
}

TEST_F(TraceFiles, RejectsBadJsonWithByteOffset) {
  write_file(prefix_ + ".json", R"({"layers": 2, "experts" 4})");
  std::string err = load_error();
  EXPECT_NE(err.find("t.json: byte 24"), std::string::npos) << err;
  EXPECT_NE(err.find("expected ':'"), std::string::npos) << err;
}

TEST_F(TraceFiles, RejectsMissingField) {
  write_file(prefix_ + ".json", R"({"experts": 4, "top_k": 2, "tokens": 3})");
  std::string err = load_error();
  EXPECT_NE(err.find("missing field \"layers\""), std::string::npos) << err;
}

TEST_F(TraceFiles, RejectsNonIntegerField) {
  write_file(prefix_ + ".json", R"({"layers": 2.5, "experts": 4, "top_k": 2, "tokens": 3})");
  std::string err = load_error();
  EXPECT_NE(err.find("\"layers\""), std::string::npos) << err;
  EXPECT_NE(err.find("non-negative integer"), std::string::npos) << err;
}

TEST_F(TraceFiles, RejectsTooManyExpertsAndTopKAboveExperts) {
  write_file(prefix_ + ".json", header_json(2, 300, 2, 3));
  EXPECT_NE(load_error().find("\"experts\" is 300"), std::string::npos);
  write_file(prefix_ + ".json", header_json(2, 4, 5, 3));
  EXPECT_NE(load_error().find("\"top_k\" is 5"), std::string::npos);
}

TEST_F(TraceFiles, RejectsSequencePastTheEnd) {
  write_file(prefix_ + ".json", header_json(2, 4, 2, 3, R"([{"offset": 2, "n_tokens": 2}])"));
  std::string err = load_error();
  EXPECT_NE(err.find("sequence 0"), std::string::npos) << err;
}

TEST_F(TraceFiles, RejectsTooFewIds) {
  ids_.pop_back();
  write_file(prefix_ + ".experts.u8.zst", compress(ids_));
  std::string err = load_error();
  EXPECT_NE(err.find("decompressed to 11 bytes"), std::string::npos) << err;
  EXPECT_NE(err.find("= 12"), std::string::npos) << err;
}

TEST_F(TraceFiles, RejectsTooManyIds) {
  ids_.push_back(0);
  write_file(prefix_ + ".experts.u8.zst", compress(ids_));
  std::string err = load_error();
  EXPECT_NE(err.find("more than the 12 bytes"), std::string::npos) << err;
}

TEST_F(TraceFiles, RejectsExpertIdOutOfRange) {
  ids_[2 * 2 + 2 + 1] = 4;  // step 1, layer 1, slot 1
  write_file(prefix_ + ".experts.u8.zst", compress(ids_));
  std::string err = load_error();
  EXPECT_NE(err.find("expert id 4 at step 1, layer 1, slot 1"), std::string::npos) << err;
}

TEST_F(TraceFiles, RejectsTruncatedZstd) {
  std::string z = compress(ids_);
  write_file(prefix_ + ".experts.u8.zst", z.substr(0, z.size() - 3));
  std::string err = load_error();
  EXPECT_TRUE(err.find("truncated") != std::string::npos ||
              err.find("corrupt") != std::string::npos)
      << err;
}

TEST_F(TraceFiles, RejectsGarbageAndEmptyZstd) {
  write_file(prefix_ + ".experts.u8.zst", "this is not zstd at all");
  EXPECT_NE(load_error().find("corrupt zstd data"), std::string::npos);
  write_file(prefix_ + ".experts.u8.zst", "");
  EXPECT_NE(load_error().find("empty file"), std::string::npos);
}

TEST_F(TraceFiles, MissingFilesAreNamed) {
  fs::remove(prefix_ + ".experts.u8.zst");
  EXPECT_NE(load_error().find("t.experts.u8.zst"), std::string::npos);
  EXPECT_NE(load_error(/*with_weights=*/true).find("t.experts.u8.zst"), std::string::npos);
  write_file(prefix_ + ".experts.u8.zst", compress(ids_));
  EXPECT_NE(load_error(/*with_weights=*/true).find("t.weights.f16.zst"), std::string::npos);
}

TEST_F(TraceFiles, LoadsWeights) {
  std::vector<uint8_t> w;
  for (size_t i = 0; i < ids_.size(); ++i) {  // 0.5 as float16 is 0x3800
    w.push_back(0x00);
    w.push_back(0x38);
  }
  write_file(prefix_ + ".weights.f16.zst", compress(w));
  auto t = Trace::load(prefix_, true);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  ASSERT_TRUE(t->has_weights());
  EXPECT_EQ(f16_to_float(t->step_weights(2)[3]), 0.5f);
}

TEST(Trace, FromIdsChecksSizeAndFillsOneSequence) {
  TraceShape shape{2, 4, 2, 3};
  auto bad = Trace::from_ids("x", shape, {}, std::vector<uint8_t>(11));
  ASSERT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("11 expert ids"), std::string::npos);
  auto good = Trace::from_ids("x", shape, {}, std::vector<uint8_t>(12));
  ASSERT_TRUE(good.ok());
  ASSERT_EQ(good->sequences().size(), 1u);
  EXPECT_EQ(good->sequences()[0].n_tokens, 3u);
}

TEST(Trace, HalfFloatConversion) {
  EXPECT_EQ(f16_to_float(0x3C00), 1.0f);
  EXPECT_EQ(f16_to_float(0xC000), -2.0f);
  EXPECT_EQ(f16_to_float(0x7BFF), 65504.0f);
  EXPECT_EQ(f16_to_float(0x0001), 5.9604644775390625e-8f);
  EXPECT_EQ(f16_to_float(0x0000), 0.0f);
}

TEST(RealTrace, LoadsGptOss20b) {
  const std::string prefix = kTraceDir + "/gpt-oss-20b";
  if (!have_trace(prefix)) GTEST_SKIP() << "no real trace at " << prefix;
  auto t = Trace::load(prefix);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->shape().layers, 24u);
  EXPECT_EQ(t->shape().experts, 32u);
  EXPECT_EQ(t->shape().top_k, 4u);
  EXPECT_EQ(t->shape().steps, 160644u);
  ASSERT_EQ(t->sequences().size(), 526u);
  EXPECT_EQ(t->sequences()[0].offset, 0u);
  EXPECT_EQ(t->sequences()[0].n_tokens, 511u);
  EXPECT_EQ(t->sequences()[0].dataset, "gpqa_diamond");
  uint64_t covered = 0;
  for (size_t i = 0; i < t->sequences().size(); ++i) {
    EXPECT_EQ(t->sequences()[i].offset, covered) << "sequence " << i;
    covered += t->sequences()[i].n_tokens;
  }
  EXPECT_EQ(covered, t->shape().steps);
  EXPECT_EQ(t->step(1), t->step(0) + 24 * 4);
}

TEST(RealTrace, LoadsMixtralWithWeightsSummingToOne) {
  const std::string prefix = kTraceDir + "/mixtral-8x7b-humaneval";
  if (!have_trace(prefix)) GTEST_SKIP() << "no real trace at " << prefix;
  auto t = Trace::load(prefix, /*with_weights=*/true);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->shape().layers, 32u);
  EXPECT_EQ(t->shape().experts, 8u);
  EXPECT_EQ(t->shape().top_k, 2u);
  EXPECT_EQ(t->shape().steps, 333u);
  ASSERT_EQ(t->sequences().size(), 2u);
  EXPECT_EQ(t->sequences()[1].offset, 81u);
  EXPECT_EQ(t->sequences()[1].dataset, "humaneval");
  ASSERT_TRUE(t->has_weights());
  for (uint64_t s = 0; s < t->shape().steps; ++s) {
    for (uint32_t l = 0; l < 32; ++l) {
      const uint16_t* w = t->step_weights(s) + l * 2;
      EXPECT_NEAR(f16_to_float(w[0]) + f16_to_float(w[1]), 1.0f, 0.02f) << s << "," << l;
    }
  }
}

// The locality measures follow the README's definitions: they give its figures.
TEST(RealTrace, LocalityMatchesTheReadme) {
  const std::string prefix = kTraceDir + "/gpt-oss-20b";
  if (!have_trace(prefix)) GTEST_SKIP() << "no real trace at " << prefix;
  auto t = Trace::load(prefix);
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  TraceLocality loc = measure_locality(*t, 20000);
  EXPECT_NEAR(loc.top25_share, 0.55, 0.02);
  EXPECT_NEAR(loc.reuse, 0.46, 0.02);
  EXPECT_NEAR(loc.xlayer, 0.59, 0.02);
}

}  // namespace
}  // namespace moepool
