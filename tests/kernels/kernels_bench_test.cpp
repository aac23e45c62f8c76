// `moepool-bench kernels`, run as the real binary: a smoke run on the small shape (lavapipe
// in CI) writes JSON with positive throughput for every decode batch and prefill tile;
// --help documents the flags; a bad type is a usage error naming it. The runs that need a
// Vulkan device skip with the reason where none exists.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <regex>
#include <sstream>
#include <string>

#include "kernels/vk_device.h"
#include "tests/shell_run.h"

namespace {

namespace fs = std::filesystem;

using moepool::testing::RunResult;

// Runs moepool-bench with `args` (a shell-quoted string), capturing its output.
RunResult run_bench(const std::string& args) {
  return moepool::testing::run_shell(std::string(MOEPOOL_BIN_DIR) + "/moepool-bench " + args);
}

// A temp dir removed at the end of the test.
struct TempDir {
  fs::path path;
  TempDir() {
    path = fs::temp_directory_path() / ("kernels_bench_test." + std::to_string(getpid()));
    fs::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
};

// The value of numeric field `key` in one JSON row object's text; NaN when absent.
double number_field(const std::string& row, const std::string& key) {
  std::smatch m;
  std::regex re("\"" + key + "\": (-?[0-9.eE+-]+)");
  if (!std::regex_search(row, m, re)) return std::nan("");
  return std::stod(m[1].str());
}

std::string string_field(const std::string& text, const std::string& key) {
  std::smatch m;
  std::regex re("\"" + key + "\": \"([^\"]*)\"");
  if (!std::regex_search(text, m, re)) return {};
  return m[1].str();
}

TEST(KernelsBench, SmallSmokeRunHasPositiveThroughputForEveryKernelAndTile) {
  auto dev = moepool::vk::Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  dev->reset();  // the bench opens its own
  TempDir tmp;
  const fs::path json = tmp.path / "kernels.json";
  RunResult r = run_bench("kernels --small --reps 2 --json " + json.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("deviceUUID"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ms per tile"), std::string::npos) << r.output;

  std::ifstream in(json);
  ASSERT_TRUE(in) << "no JSON at " << json;
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  EXPECT_FALSE(string_field(text, "name").empty()) << text;
  EXPECT_EQ(string_field(text, "uuid").size(), 36u) << text;
  EXPECT_NE(text.find("\"errors\": []"), std::string::npos) << text;

  // Every row: {"kernel": ..., flat fields ...}.
  std::map<std::string, int> seen;  // "decode/1", "prefill/256/64", ...
  std::regex row_re("\\{\"kernel\": \"([a-z_]+)\"[^{}]*\\}");
  for (auto it = std::sregex_iterator(text.begin(), text.end(), row_re);
       it != std::sregex_iterator(); ++it) {
    const std::string row = (*it)[0].str();
    const std::string kernel = (*it)[1].str();
    const int tokens = static_cast<int>(number_field(row, "tokens"));
    const int tile = static_cast<int>(number_field(row, "tile"));
    std::string key = kernel + "/" + std::to_string(tokens);
    if (kernel == "prefill") key += "/" + std::to_string(tile);
    ++seen[key];
    EXPECT_EQ(string_field(row, "shape"), "small") << row;
    EXPECT_EQ(number_field(row, "reps"), 2) << row;
    for (const char* f : {"median_s", "mean_s", "min_s", "tokens_per_s", "gb_per_s",
                          "weight_bytes", "distinct_experts"})
      EXPECT_GT(number_field(row, f), 0) << f << " in " << row;
    // Decode rows carry the read ceiling on the same calls' expert bytes: the same bytes
    // (the small shape's projections are whole 16-byte units) at a positive rate.
    if (kernel == "decode") {
      for (const char* f : {"ceiling_median_s", "ceiling_gb_per_s", "pct_of_ceiling",
                            "ceiling_split_median_s", "ceiling_split_gb_per_s",
                            "pct_of_split_ceiling"})
        EXPECT_GT(number_field(row, f), 0) << f << " in " << row;
      EXPECT_EQ(number_field(row, "ceiling_bytes"), number_field(row, "weight_bytes")) << row;
    } else {
      EXPECT_TRUE(std::isnan(number_field(row, "ceiling_gb_per_s"))) << row;
    }
  }
  EXPECT_NE(r.output.find("ceil GB/s"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("ceil2 GB/s"), std::string::npos) << r.output;
  EXPECT_FALSE(string_field(text, "ceiling").empty()) << text;
  for (const char* want : {"decode/1", "decode/2", "decode/4", "decode/8", "prefill/128/32",
                           "prefill/128/64", "prefill/128/128"})
    EXPECT_EQ(seen[want], 1) << want << " missing from " << text;
  EXPECT_EQ(seen.size(), 7u) << text;
}

TEST(KernelsBench, NoCeilingLeavesTheCeilingColumnsOut) {
  auto dev = moepool::vk::Device::open();
  if (!dev.ok()) GTEST_SKIP() << "no Vulkan device: " << dev.status().message();
  dev->reset();
  TempDir tmp;
  const fs::path json = tmp.path / "kernels.json";
  RunResult r = run_bench("kernels --small --no-prefill --tokens 1 --reps 1 --no-ceiling --json " +
                          json.string());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("ceil GB/s"), std::string::npos) << r.output;
  std::ifstream in(json);
  ASSERT_TRUE(in) << "no JSON at " << json;
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str().find("ceiling"), std::string::npos) << ss.str();
  EXPECT_NE(ss.str().find("\"kernel\": \"decode\""), std::string::npos) << ss.str();
}

TEST(KernelsBench, ABadCeilingChunkIsAUsageError) {
  RunResult r = run_bench("kernels --small --ceiling-chunk-kib 0");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("--ceiling-chunk-kib"), std::string::npos) << r.output;
}

TEST(KernelsBench, HelpNamesEveryFlagAndTheTopLevelHelpNamesTheSubcommand) {
  RunResult r = run_bench("kernels --help");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* flag :
       {"--shape", "--small", "--type", "--experts", "--tokens", "--prefill-tokens", "--tiles",
        "--reps", "--warmup", "--skew", "--seed", "--device", "--segment-mib", "--peak-gbs",
        "--no-decode", "--no-prefill", "--cpu", "--cpu-only", "--json", "--fill-threads",
        "--decode-workgroup", "--decode-rows", "--prefill-rows", "--no-ceiling",
        "--ceiling-workgroup", "--ceiling-chunk-kib", "--ceiling-unroll", "--ceiling-scrub-mib"})
    EXPECT_NE(r.output.find(flag), std::string::npos) << flag << " not in\n" << r.output;
  RunResult top = run_bench("--help");
  ASSERT_EQ(top.exit_code, 0) << top.output;
  EXPECT_NE(top.output.find("moepool-bench kernels"), std::string::npos) << top.output;
}

TEST(KernelsBench, AnUnsupportedTypeIsAUsageErrorNamingIt) {
  RunResult r = run_bench("kernels --small --type q4_0");
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("q4_0"), std::string::npos) << r.output;
}

}  // namespace
