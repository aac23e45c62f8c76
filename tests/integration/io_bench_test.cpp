// `moepool-bench io`, run as the real binary on a small file in a temp dir: seq, rand and an
// extents list read exactly the bytes asked for and end with the exact result line;
// --print-extents lists a model's expert extents; bad input is refused naming the problem
// (exit 2 for usage errors, 1 for runtime errors). No timing thresholds.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <regex>
#include <sstream>
#include <string>

#include "tests/shell_run.h"

namespace {

namespace fs = std::filesystem;

using moepool::testing::RunResult;
using moepool::testing::run_shell;

RunResult run_io(const std::string& args) {
  return run_shell(std::string(MOEPOOL_BIN_DIR) + "/moepool-bench io " + args);
}

// The last line of `text` (without its newline).
std::string last_line(const std::string& text) {
  std::string t = text;
  while (!t.empty() && t.back() == '\n') t.pop_back();
  auto nl = t.rfind('\n');
  return nl == std::string::npos ? t : t.substr(nl + 1);
}

// The byte count of the result line, or -1 when the last line is not exactly in the format.
long long result_bytes(const std::string& output) {
  static const std::regex re(R"(^read ([0-9]+) bytes in [0-9]+\.[0-9]+ s, [0-9]+\.[0-9]{2} GB/s$)");
  std::smatch m;
  const std::string line = last_line(output);
  if (!std::regex_match(line, m, re)) return -1;
  return std::stoll(m[1].str());
}

class IoBenchTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Under the build tree, not /tmp: /tmp may be a tmpfs, which refuses O_DIRECT.
    dir_ = fs::path(MOEPOOL_TEST_DIR) / ("io_bench_test." + std::to_string(getpid()));
    fs::create_directories(dir_);
    file_ = dir_ / "data.bin";
    std::ofstream out(file_, std::ios::binary);
    std::mt19937_64 rng(7);
    std::string block(kFileBytes, '\0');
    for (char& c : block) c = static_cast<char>(rng());
    out.write(block.data(), block.size());
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::string write_file(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }

  static constexpr uint64_t kFileBytes = 3 * 1024 * 1024 + 12345;  // not a block multiple
  fs::path dir_, file_;
};

TEST_F(IoBenchTest, SeqReadsTheWholeFileByDefault) {
  RunResult r = run_io("--file " + file_.string() + " --block 256K --qd 4 --pattern seq");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(result_bytes(r.output), static_cast<long long>(kFileBytes)) << r.output;
}

TEST_F(IoBenchTest, SeqWrapsPastTheEndUntilTheByteCount) {
  RunResult r = run_io("--file " + file_.string() +
                       " --block 1M --qd 3 --pattern seq --bytes 7M --offset 1M");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(result_bytes(r.output), 7LL << 20) << r.output;
}

TEST_F(IoBenchTest, RandReadsTheByteCountAtAnyQueueDepth) {
  for (const char* qd : {"1", "16"}) {
    RunResult r = run_io("--file " + file_.string() +
                         " --block 64K --qd " + qd + " --pattern rand --bytes 5000000 --seed 3");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(result_bytes(r.output), 5000000) << r.output;
  }
}

TEST_F(IoBenchTest, DirectReadsWhereTheFilesystemAllowsIt) {
  RunResult r = run_io("--file " + file_.string() + " --direct --block 64K --qd 8 --bytes 2M");
  if (r.exit_code == 1 && r.output.find("refuses O_DIRECT") != std::string::npos)
    GTEST_SKIP() << "the build tree's filesystem refuses O_DIRECT";
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(result_bytes(r.output), 2LL << 20) << r.output;
}

TEST_F(IoBenchTest, ExtentsReadEveryLineOnceInclUnalignedOnes) {
  const std::string extents = write_file("e.txt",
                                         "# comment\n"
                                         "0 4096\n"
                                         "\n"
                                         "100 1000000   # unaligned, split by --block\n"
                                         "0x200000 12345\n");
  RunResult r = run_io("--file " + file_.string() + " --extents " + extents + " --block 64K --qd 2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(result_bytes(r.output), 4096 + 1000000 + 12345) << r.output;
  EXPECT_NE(r.output.find("3 requests"), std::string::npos) << r.output;
}

TEST_F(IoBenchTest, MalformedExtentsLineNamesItsLineNumber) {
  const std::string extents = write_file("bad.txt", "0 4096\n# fine\n4096 lots\n");
  RunResult r = run_io("--file " + file_.string() + " --extents " + extents);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("bad.txt:3"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("malformed"), std::string::npos) << r.output;
}

TEST_F(IoBenchTest, ExtentPastTheEndOfTheFileIsRefused) {
  const std::string extents =
      write_file("past.txt", std::to_string(kFileBytes - 10) + " 4096\n");
  RunResult r = run_io("--file " + file_.string() + " --extents " + extents);
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("past.txt:1"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("past the end"), std::string::npos) << r.output;
}

TEST_F(IoBenchTest, MissingFileIsARuntimeErrorNamingIt) {
  RunResult r = run_io("--file " + (dir_ / "nope.bin").string());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("nope.bin"), std::string::npos) << r.output;
}

TEST_F(IoBenchTest, UsageErrorsExitTwoNamingTheFlag) {
  struct Case {
    std::string args, expect;
  };
  const Case cases[] = {
      {"--file " + file_.string() + " --qd 0", "--qd"},
      {"--file " + file_.string() + " --direct --block 6000", "not a multiple of 4096"},
      {"--file " + file_.string() + " --pattern zigzag", "--pattern"},
      {"--file " + file_.string() + " --block 12XB", "12XB"},
      {"--block 4096", "--file"},
  };
  for (const Case& c : cases) {
    RunResult r = run_io(c.args);
    EXPECT_EQ(r.exit_code, 2) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
  }
}

TEST_F(IoBenchTest, HelpDescribesThePatternsAndTheResultLine) {
  RunResult r = run_io("--help");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* s : {"--extents", "--pattern", "--qd", "--direct", "--print-extents",
                        "read <bytes> bytes in <seconds> s, <x.xx> GB/s"})
    EXPECT_NE(r.output.find(s), std::string::npos) << s;
}

TEST_F(IoBenchTest, PrintExtentsListsTopKExpertsPerLayerThatReadBack) {
  const fs::path model = dir_ / "m.gguf";
  RunResult s = run_shell(std::string(MOEPOOL_BIN_DIR) + "/moepool-synth --layers 2 --experts 8 " +
                          "--embd 256 --ffn 256 --type q4_K --out " + model.string());
  ASSERT_EQ(s.exit_code, 0) << s.output;
  RunResult r = run_io("--print-extents " + model.string() + " --top-k 3 --seed 5");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string extents = write_file("m.extents", r.output);
  int lines = 0;
  std::istringstream in(r.output);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line[0] != '#') ++lines;
  EXPECT_EQ(lines, 2 * 3 * 3);  // layers x top-k x (gate, up, down)
  // 256x256 Q4_K: 144 bytes per 256 weights, 256 rows.
  const long long expert_proj = 256 / 256 * 144 * 256;
  RunResult read = run_io("--file " + model.string() + " --extents " + extents + " --block 8K");
  ASSERT_EQ(read.exit_code, 0) << read.output;
  EXPECT_EQ(result_bytes(read.output), 18 * expert_proj) << read.output;
  RunResult bad = run_io("--print-extents " + model.string() + " --top-k 9");
  EXPECT_EQ(bad.exit_code, 1) << bad.output;
  EXPECT_NE(bad.output.find("--top-k 9"), std::string::npos) << bad.output;
}

}  // namespace
