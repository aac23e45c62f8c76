// Tests of the persisted expert popularity (daemon/popularity_store.h).
#include "daemon/popularity_store.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "tests/unit/temp_dir.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

constexpr uint64_t kId = 0x0123456789abcdefull;

std::string slurp(const std::string& path) {
  std::ifstream in(path);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

TEST(PopularityFormat, RoundTrips) {
  std::vector<PopularityEntry> e = {{2, 7, 3}, {0, 1, 12.5}, {0, 0, 1}};
  std::string text = encode_popularity(kId, "my model", e);
  EXPECT_EQ(text.rfind("moepool-popularity 1\nmodel 0123456789abcdef\nname my model\n", 0), 0u)
      << text;
  auto back = decode_popularity(text, kId);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  std::vector<PopularityEntry> want = {{0, 0, 1}, {0, 1, 12.5}, {2, 7, 3}};
  EXPECT_EQ(*back, want);
}

TEST(PopularityFormat, MalformedFilesNameTheLineAndTheProblem) {
  std::string good = encode_popularity(kId, "m", {{0, 1, 2}, {1, 3, 4}});
  struct Case {
    std::string text, error;
  };
  std::vector<Case> cases = {
      {"", "header is incomplete"},
      {"garbage\n", "line 1: not a moepool popularity file"},
      {"moepool-popularity 9\n", "line 1: format version '9'"},
      {"moepool-popularity 1\nmodel 00000000000000ff\nname m\nend 0\n",
       "line 2: the file is for model 00000000000000ff"},
      {good.substr(0, good.size() - 1), "no newline at the end"},
      {good.substr(0, good.find("end")), "no 'end' line"},
      {"moepool-popularity 1\nmodel 0123456789abcdef\nname m\n0 1 x\nend 1\n",
       "line 4: count 'x' is not a number"},
      {"moepool-popularity 1\nmodel 0123456789abcdef\nname m\n0 1 -3\nend 1\n",
       "line 4: count '-3'"},
      {"moepool-popularity 1\nmodel 0123456789abcdef\nname m\n0 1\nend 1\n",
       "line 4: expected 'layer expert count'"},
      {"moepool-popularity 1\nmodel 0123456789abcdef\nname m\n0 1 1\nend 2\n",
       "line 5: 'end' says 2 entries, the file has 1"},
      {good + "0 1 1\n", "text after the 'end' line"},
  };
  for (const Case& c : cases) {
    auto r = decode_popularity(c.text, kId);
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_NE(r.status().message().find(c.error), std::string::npos)
        << "got: " << r.status().message() << "\nwant: " << c.error;
  }
}

TEST(PopularityStore, SavesAtomicallyAndLoadsHalvedOnTheFirstOpen) {
  TempDir dir("moepool_popularity_test");
  {
    PopularityStore s(dir.path().string());
    auto first = s.open_model(kId, "m");
    EXPECT_TRUE(first.first);
    EXPECT_TRUE(first.entries.empty());
    s.count(kId, "m", 0, {1, 2});
    s.count(kId, "m", 0, {2});
    s.count(kId, "m", 3, {5});
    EXPECT_FALSE(s.open_model(kId, "m").first) << "only the first open is first";
    ASSERT_TRUE(s.save_all().ok());
    EXPECT_TRUE(fs::exists(s.path_for(kId)));
    EXPECT_FALSE(fs::exists(s.path_for(kId) + ".tmp"));
    EXPECT_EQ(s.path_for(kId), dir.file("0123456789abcdef.popularity"));
  }
  PopularityStore s(dir.path().string());
  s.count(kId, "m", 0, {2});  // counted before the open: merged, not overwritten
  auto opened = s.open_model(kId, "m");
  EXPECT_TRUE(opened.first);
  std::vector<PopularityEntry> want = {{0, 1, 0.5}, {0, 2, 2.0}, {3, 5, 0.5}};
  EXPECT_EQ(opened.entries, want);
}

TEST(PopularityStore, AModelNotYetMergedWithItsFileIsNotSaved) {
  TempDir dir("moepool_popularity_test");
  std::string path;
  {
    PopularityStore s(dir.path().string());
    s.open_model(kId, "m");
    s.count(kId, "m", 1, {1});
    ASSERT_TRUE(s.save_all().ok());
    path = s.path_for(kId);
  }
  std::string before = slurp(path);
  PopularityStore s(dir.path().string());
  s.count(kId, "m", 1, {2});
  ASSERT_TRUE(s.save_all().ok());
  EXPECT_EQ(slurp(path), before) << "saving before the merge would have dropped the history";
}

TEST(PopularityStore, AMalformedFileIsIgnoredAndReplacedAtTheNextSave) {
  TempDir dir("moepool_popularity_test");
  PopularityStore s(dir.path().string());
  std::ofstream(s.path_for(kId)) << "moepool-popularity 1\nmodel 0123456789abcdef\nname m\n0 1 ";
  auto opened = s.open_model(kId, "m");
  EXPECT_TRUE(opened.first);
  EXPECT_TRUE(opened.entries.empty());
  s.count(kId, "m", 0, {4});
  ASSERT_TRUE(s.save_all().ok());
  auto back = decode_popularity(slurp(s.path_for(kId)), kId);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, (std::vector<PopularityEntry>{{0, 4, 1}}));
}

TEST(PopularityStore, AnUnwritableDirectoryIsAnErrorNotACrash) {
  TempDir dir("moepool_popularity_test");
  PopularityStore s(dir.file("missing"));
  s.open_model(kId, "m");
  s.count(kId, "m", 0, {1});
  Status st = s.save_all();
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("missing"), std::string::npos) << st.message();
}

}  // namespace
}  // namespace moepool
