// llama.cpp (the prebuilt v0.5.0 of node-llama-cpp 3.22.1) decodes synthetic qwen3moe
// models with its routed experts served by a real moepoold, through moepool-llama and
// libmoepool-llama; every run is compared byte for byte with stock llama.cpp reading the
// file itself.
#include <gtest/gtest.h>

#include <fstream>
#include <iterator>
#include <regex>

#include "../integration/daemon_harness.h"

namespace moepool::testing {
namespace {

constexpr int kLayers = 4, kExperts = 16, kTopK = 2, kSteps = 32;
const char* kPrompt = "11,42,7,199,3,64,128,5";  // 8 tokens

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

// The "tokens" array of moepool-llama --json output.
std::string tokens_of(const std::string& json) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"tokens\":\\[([0-9,]*)\\]"))) return "<none>";
  return m[1];
}

uint64_t number_of(const std::string& json, const std::string& key) {
  std::smatch m;
  if (!std::regex_search(json, m, std::regex("\"" + key + "\":([0-9]+)"))) return UINT64_MAX;
  return std::stoull(m[1]);
}

class LlamaDecodeTest : public DaemonFixture {
 protected:
  std::string model(const std::string& type, std::vector<std::string> extra = {}) {
    std::vector<std::string> args = {"--arch", "qwen3moe", "--type", type,
                                     "--layers", std::to_string(kLayers),
                                     "--experts", std::to_string(kExperts),
                                     "--top-k", std::to_string(kTopK), "--seed", "7"};
    args.insert(args.end(), extra.begin(), extra.end());
    return synth("qwen3moe-" + type + ".gguf", args);
  }

  // Bytes of a pool that holds about a quarter of the model's experts: one slot is the
  // expert's three projections, each padded to whole 4 KiB pages plus one for alignment.
  static std::string quarter_pool(uint64_t projection_bytes) {
    uint64_t slot = 3 * ((projection_bytes + 4095) / 4096 * 4096 + 4096);
    return std::to_string(slot * (kLayers * kExperts / 4));
  }

  // Runs moepool-llama; returns {exit code, stdout} and leaves the logits in `dump`.
  std::pair<int, std::string> decode(const std::string& gguf, const std::string& dump,
                                     bool with_pool) {
    std::vector<std::string> argv = {bin("moepool-llama"), gguf, "--prompt", kPrompt, "-n",
                                     std::to_string(kSteps), "-t", "1", "--json",
                                     "--dump-logits", dump};
    if (with_pool) {
      argv.push_back("--moepool");
      argv.push_back(socket_);
    }
    return run(argv);
  }

  // Runs argv with stderr folded into stdout (paths here have no spaces).
  static std::pair<int, std::string> run_both(const std::vector<std::string>& argv) {
    std::string cmd;
    for (const auto& a : argv) cmd += a + " ";
    return run({"/bin/sh", "-c", cmd + "2>&1"});
  }

  // Two moepool-llama processes with --moepool started together, logits into a.bin and
  // b.bin; returns their stdout (a failure to exit 0 is a fatal test failure).
  std::pair<std::string, std::string> decode_twice_at_once(const std::string& gguf) {
    auto argv = [&](const std::string& dump) {
      return std::vector<std::string>{bin("moepool-llama"), gguf, "--prompt", kPrompt, "-n",
                                      std::to_string(kSteps), "-t", "1", "--json",
                                      "--dump-logits", dump, "--moepool", socket_};
    };
    Process first(argv(path("a.bin"))), second(argv(path("b.bin")));
    std::string out_a = first.read_all(), out_b = second.read_all();
    int rc_a = first.wait(), rc_b = second.wait();
    [&] {
      ASSERT_EQ(rc_a, 0) << out_a;
      ASSERT_EQ(rc_b, 0) << out_b;
    }();
    return {out_a, out_b};
  }

  std::string path(const std::string& name) const { return (dir_ / name).string(); }
};

struct TypeCase {
  const char* type;
  uint64_t projection_bytes;  // one expert of one projection at embd = ffn = 256
};

void PrintTo(const TypeCase& c, std::ostream* os) { *os << c.type; }

class LlamaTypeTest : public LlamaDecodeTest, public ::testing::WithParamInterface<TypeCase> {};

TEST_P(LlamaTypeTest, LogitsBitIdenticalToStockWithEviction) {
  std::string gguf = model(GetParam().type);
  auto [rc0, stock] = decode(gguf, path("stock.bin"), false);
  ASSERT_EQ(rc0, 0) << stock;
  start_daemon(quarter_pool(GetParam().projection_bytes));
  auto [rc1, pooled] = decode(gguf, path("pool.bin"), true);
  ASSERT_EQ(rc1, 0) << pooled;

  std::string a = read_file(path("stock.bin")), b = read_file(path("pool.bin"));
  ASSERT_EQ(a.size(), (kSteps + 1) * 256 * sizeof(float));
  ASSERT_EQ(a.size(), b.size());
  for (size_t row = 0; row * 1024 < a.size(); ++row)
    ASSERT_EQ(memcmp(a.data() + row * 1024, b.data() + row * 1024, 1024), 0)
        << "logits differ after decode call " << row;
  EXPECT_EQ(tokens_of(stock), tokens_of(pooled));
  EXPECT_GT(number_of(pooled, "layers"), uint64_t{kLayers * kSteps}) << pooled;

  auto client = connect();
  ASSERT_TRUE(client);
  auto stats = client->stats();
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->models.size(), 1u);
  EXPECT_GT(stats->models[0].evictions, 0u) << "a quarter-size pool must evict";
  EXPECT_GT(stats->models[0].hits, 0u);
}

INSTANTIATE_TEST_SUITE_P(ExpertTypes, LlamaTypeTest,
                         ::testing::Values(TypeCase{"f32", 256 * 256 * 4},
                                           TypeCase{"f16", 256 * 256 * 2},
                                           TypeCase{"q8_0", 256 * 8 * 34},
                                           TypeCase{"q4_K", 256 * 144}),
                         [](const auto& info) { return std::string(info.param.type); });

TEST_F(LlamaDecodeTest, TwoProcessesShareOneCopy) {
  std::string gguf = model("q8_0");
  auto [rc0, stock] = decode(gguf, path("stock.bin"), false);
  ASSERT_EQ(rc0, 0) << stock;
  start_daemon("64M");  // room for every expert: both sessions hit the same copy
  auto [out_a, out_b] = decode_twice_at_once(gguf);
  if (HasFatalFailure()) return;

  std::string expect = read_file(path("stock.bin"));
  EXPECT_TRUE(read_file(path("a.bin")) == expect) << "first process differs from stock";
  EXPECT_TRUE(read_file(path("b.bin")) == expect) << "second process differs from stock";
  EXPECT_GT(number_of(out_a, "hits"), 0u) << out_a;
  EXPECT_GT(number_of(out_b, "hits"), 0u) << out_b;

  auto client = connect();
  ASSERT_TRUE(client);
  auto stats = client->stats();
  ASSERT_TRUE(stats.ok());
  ASSERT_EQ(stats->models.size(), 1u) << "both processes must share one model";
  // One copy: no expert was read twice, so the bytes read are at most the experts' total.
  EXPECT_LE(stats->models[0].misses, uint64_t{kLayers * kExperts});
  EXPECT_EQ(stats->models[0].hits + stats->models[0].misses,
            number_of(out_a, "experts") + number_of(out_b, "experts"));
}

// Negative control: the same run against a test-only daemon that inverts one byte of one
// expert (moepoold-corrupt, built only with the tests) must change the logits, which
// proves llama.cpp computed with the pool's bytes and not with its own mapping.
TEST_F(LlamaDecodeTest, OneAlteredPoolByteChangesTheLogits) {
  std::string gguf = model("q8_0");
  auto [rc0, stock] = decode(gguf, path("stock.bin"), false);
  ASSERT_EQ(rc0, 0) << stock;
  // A quant payload byte (not a block scale) of every expert's down projection in layer 0:
  // whichever experts layer 0 routes to, one of them is served with a wrong byte.
  auto [rci, inspect] = run({bin("moepool-synth"), "--inspect", gguf, "--json"});
  ASSERT_EQ(rci, 0) << inspect;
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      inspect, m, std::regex("\"blk\\.0\\.ffn_down_exps\\.weight\"[^}]*\"data_offset\": ([0-9]+)")))
      << inspect;
  const uint64_t down = std::stoull(m[1]), expert_bytes = 256 * 8 * 34;  // q8_0 [256, 256]
  std::vector<std::string> flags;
  for (int e = 0; e < kExperts; ++e) {
    flags.push_back("--corrupt-file-offset");
    flags.push_back(std::to_string(down + e * expert_bytes + 100));
  }
  start_daemon("64M", flags, "moepoold-corrupt");
  auto [rc1, pooled] = decode(gguf, path("pool.bin"), true);
  ASSERT_EQ(rc1, 0) << pooled;
  EXPECT_TRUE(read_file(path("stock.bin")) != read_file(path("pool.bin")))
      << "an inverted byte in the experts layer 0 routes to must change the logits";
  // ... and nothing else differs: the same daemon without the fault gives stock's logits.
  daemon_ = Process();  // stopped (SIGKILL, reaped) before the next one binds the socket
  start_daemon("64M");
  auto [rc2, clean] = decode(gguf, path("clean.bin"), true);
  ASSERT_EQ(rc2, 0) << clean;
  EXPECT_TRUE(read_file(path("stock.bin")) == read_file(path("clean.bin")));
}

// A pool too small for one ubatch of the prompt: the adapter caps n_ubatch (slots /
// top-k) and llama.cpp prefills in several ubatches; stock at that n_ubatch matches.
TEST_F(LlamaDecodeTest, SmallPoolCapsTheUbatchAndStaysBitIdentical) {
  std::string gguf = model("f32");  // big experts, so 7 slots clear the 1 MiB pool minimum
  const uint64_t slot = 3 * (256 * 256 * 4 + 4096);
  start_daemon(std::to_string(7 * slot));  // 7 slots: ubatch 3 at top-2
  auto [rc1, pooled] = decode(gguf, path("pool.bin"), true);
  ASSERT_EQ(rc1, 0) << pooled;
  uint64_t ubatch = number_of(pooled, "n_ubatch");
  ASSERT_LT(ubatch, 8u) << "the 8-token prompt must not fit one ubatch: " << pooled;
  auto [rc0, stock] = run({bin("moepool-llama"), gguf, "--prompt", kPrompt, "-n",
                           std::to_string(kSteps), "-t", "1", "--json", "--ubatch",
                           std::to_string(ubatch), "--dump-logits", path("stock.bin")});
  ASSERT_EQ(rc0, 0) << stock;
  EXPECT_TRUE(read_file(path("stock.bin")) == read_file(path("pool.bin")));
  EXPECT_EQ(tokens_of(stock), tokens_of(pooled));
}

// Two processes on a pool barely larger than one layer's 16 experts: each evicts the
// other's experts, and an acquire made while the other pins most of the pool is refused
// and retried (when their prefills overlap); both still match stock, and no pin remains.
TEST_F(LlamaDecodeTest, TwoProcessesOnATightPoolStayBitIdentical) {
  std::string gguf = model("q8_0");
  auto [rc0, stock] = decode(gguf, path("stock.bin"), false);
  ASSERT_EQ(rc0, 0) << stock;
  const uint64_t slot = 3 * (256 * 8 * 34 + 4096);
  start_daemon(std::to_string(18 * slot));
  auto [out_a, out_b] = decode_twice_at_once(gguf);
  if (HasFatalFailure()) return;
  std::string expect = read_file(path("stock.bin"));
  EXPECT_TRUE(read_file(path("a.bin")) == expect) << out_a;
  EXPECT_TRUE(read_file(path("b.bin")) == expect) << out_b;
  auto client = connect();
  ASSERT_TRUE(client);
  auto stats = client->stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->pinned_bytes, 0u) << "both sessions ended; no pin may remain";
  EXPECT_GT(stats->evictions, 0u);
}

TEST_F(LlamaDecodeTest, ExpertBiasesAreRefused) {
  std::string gguf = model("q8_0", {"--expert-bias"});
  start_daemon("16M");
  auto [rc, out] = run_both({bin("moepool-llama"), gguf, "--prompt", kPrompt, "-n", "4",
                             "--moepool", socket_});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("ffn_gate_exps.bias"), std::string::npos) << out;
  EXPECT_NE(out.find("biases or scales"), std::string::npos) << out;
  auto client = connect();
  ASSERT_TRUE(client);
  auto stats = client->stats();
  ASSERT_TRUE(stats.ok());
  EXPECT_EQ(stats->hits + stats->misses, 0u) << "nothing may be served for a refused model";
}

TEST_F(LlamaDecodeTest, ExpertScalesAreRefusedThoughStockLoadsThem) {
  std::string gguf = model("q8_0", {"--expert-scale"});
  auto [rc0, stock] = decode(gguf, path("stock.bin"), false);
  ASSERT_EQ(rc0, 0) << "stock llama.cpp applies per-expert scales: " << stock;
  start_daemon("16M");
  auto [rc, out] = run_both({bin("moepool-llama"), gguf, "--prompt", kPrompt, "-n", "4",
                             "--moepool", socket_});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("_exps.scale"), std::string::npos) << out;
}

}  // namespace
}  // namespace moepool::testing
