// Quotas end to end: [quota."<model>"] in the config, Admin.SetQuota through the real
// moepoolctl, read back in `moepoolctl stats` and the client's stats; bad values refused
// with the reason and nothing changed.
#include <fstream>

#include "common/catalog.h"
#include "tests/integration/daemon_harness.h"

namespace moepool::testing {
namespace {

std::vector<std::string> small_model() {
  return {"--layers", "4", "--experts", "16", "--embd", "256", "--ffn", "512", "--type", "q8_0"};
}

// Runs `argv` with stderr joined to stdout; returns {exit code, output}.
std::pair<int, std::string> run_all(const std::vector<std::string>& argv) {
  std::string cmd;
  for (const auto& a : argv) cmd += "'" + a + "' ";
  return run({"/bin/sh", "-c", cmd + "2>&1"});
}

class QuotaTest : public DaemonFixture {
 protected:
  std::vector<std::string> ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {bin("moepoolctl"), "--socket", socket_});
    return args;
  }
  // The stats of model `name`, or nullopt.
  std::optional<ModelStats> model_stats(Client& c, const std::string& name) {
    auto st = c.stats();
    EXPECT_TRUE(st.ok());
    if (!st.ok()) return std::nullopt;
    for (const ModelStats& m : st->models)
      if (m.name == name) return m;
    return std::nullopt;
  }
};

TEST_F(QuotaTest, CtlSetsAQuotaThatStatsShowsAndRefusesBadValues) {
  std::string path = synth("m.gguf", small_model());
  start_daemon("16M");
  auto c = connect();
  auto m = c->open_model(path);
  ASSERT_TRUE(m.ok());
  const std::string name = m->name;

  auto [rc, out] = run_all(ctl({"quota", name, "--weight", "2.5", "--min", "4M", "--max", "8M"}));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("weight 2.5, min 4.00 MiB, max 8.00 MiB"), std::string::npos) << out;
  auto s = model_stats(*c, name);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->weight, 2.5);
  EXPECT_EQ(s->min_bytes, 4u << 20);
  EXPECT_EQ(s->max_bytes, 8u << 20);

  // Only --max: weight and min keep their values.
  std::tie(rc, out) = run_all(ctl({"quota", name, "--max", "12M", "--json"}));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\"weight\": 2.5"), std::string::npos) << out;
  EXPECT_NE(out.find("\"max_bytes\": 12582912"), std::string::npos) << out;

  // `stats` shows the quota (text and JSON).
  std::tie(rc, out) = run_all(ctl({"stats"}));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("WEIGHT"), std::string::npos) << out;
  EXPECT_NE(out.find("12.00 MiB"), std::string::npos) << out;
  EXPECT_NE(out.find("STRIDE"), std::string::npos) << "slot classes are listed: " << out;
  std::tie(rc, out) = run_all(ctl({"stats", "--json"}));
  ASSERT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("\"min_bytes\": 4194304"), std::string::npos) << out;
  EXPECT_NE(out.find("\"classes\": ["), std::string::npos) << out;
  EXPECT_NE(out.find("\"segment_moves\": "), std::string::npos) << out;
  EXPECT_NE(out.find("\"warmup\": {\"state\": "), std::string::npos) << out;

  struct Bad {
    std::vector<std::string> args;
    std::string error;
  };
  std::vector<Bad> bad = {
      {{"quota", name, "--weight", "0"}, "weight must be > 0"},
      {{"quota", name, "--weight=-1"}, "weight must be > 0"},
      {{"quota", name, "--min", "10M", "--max", "5M"}, "is below min"},
      {{"quota", "another model", "--min", "13M"}, "more than the pool"},
      {{"quota", name, "--min", "12Q"}, "--min"},
      {{"quota", "", "--weight", "1"}, "empty"},
  };
  for (const Bad& b : bad) {
    std::tie(rc, out) = run_all(ctl(b.args));
    EXPECT_EQ(rc, 1) << out;
    EXPECT_NE(out.find(b.error), std::string::npos) << "want '" << b.error << "' in: " << out;
  }
  s = model_stats(*c, name);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->weight, 2.5) << "refused calls change nothing";
  EXPECT_EQ(s->min_bytes, 4u << 20);
  EXPECT_EQ(s->max_bytes, 12u << 20);

  std::tie(rc, out) = run_all(ctl({"quota", "--help"}));
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find("--weight"), std::string::npos) << out;
  EXPECT_NE(out.find("--min"), std::string::npos) << out;
}

TEST_F(QuotaTest, ConfigQuotasApplyAtStartAndBadOnesStopTheDaemonWithTheLine) {
  std::string path = synth("m.gguf", small_model());
  auto cat = Catalog::open(path);
  ASSERT_TRUE(cat.ok());
  const std::string name = cat->name();
  std::string config = (dir_ / "moepoold.toml").string();
  std::ofstream(config) << "[quota.\"" << name << "\"]\nweight = 3\nmin = \"2M\"\nmax = \"6M\"\n";
  start_daemon("16M", {"--config", config});
  auto c = connect();
  ASSERT_TRUE(c->open_model(path).ok());
  auto s = model_stats(*c, name);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->weight, 3.0);
  EXPECT_EQ(s->min_bytes, 2u << 20);
  EXPECT_EQ(s->max_bytes, 6u << 20);
  c.reset();
  daemon_.signal(SIGTERM);
  EXPECT_EQ(daemon_.wait(), 0);

  std::ofstream(config) << "[quota.\"" << name << "\"]\nweight = 1\nmin = \"8M\"\nmax = \"4M\"\n";
  auto [rc, out] = run_all({bin("moepoold"), "--config", config, "--socket", socket_,
                            "--pool-size", "16M", "--model-root", models(), "--print-config"});
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find(config + ":1:"), std::string::npos) << "names file and line: " << out;
  EXPECT_NE(out.find("is below min"), std::string::npos) << out;

  std::ofstream(config) << "[quota.\"" << name << "\"]\nwieght = 1\n";
  std::tie(rc, out) = run_all({bin("moepoold"), "--config", config, "--print-config"});
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find(config + ":2:1"), std::string::npos) << out;
  EXPECT_NE(out.find("did you mean 'weight'"), std::string::npos) << out;

  std::ofstream(config) << "[quota.a]\nmin = \"10M\"\n[quota.b]\nmin = \"10M\"\n";
  std::tie(rc, out) = run_all({bin("moepoold"), "--config", config, "--pool-size", "16M",
                               "--print-config"});
  EXPECT_EQ(rc, 2) << out;
  EXPECT_NE(out.find("more than pool.size"), std::string::npos) << out;
}

TEST_F(QuotaTest, NonAdminCannotSetAQuota) {
  if (geteuid() != 0 || !fs::exists("/usr/bin/setpriv"))
    GTEST_SKIP() << "needs root and setpriv to run moepoolctl as another user";
  std::string path = synth("m.gguf", small_model());
  // A socket anybody may connect to, in a directory anybody may enter.
  fs::create_directories(dir_ / "run");
  fs::permissions(dir_ / "run", fs::perms::owner_all | fs::perms::group_read |
                                    fs::perms::group_exec | fs::perms::others_read |
                                    fs::perms::others_exec);
  std::string config = (dir_ / "moepoold.toml").string();
  std::ofstream(config) << "[daemon]\nsocket_mode = \"0666\"\n";
  start_daemon("16M", {"--config", config});
  auto c = connect();
  auto m = c->open_model(path);
  ASSERT_TRUE(m.ok());
  std::vector<std::string> as_nobody = {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534",
                                        "--clear-groups"};
  auto cmd = [&](std::vector<std::string> args) {
    std::vector<std::string> argv = as_nobody;
    for (const std::string& a : ctl(std::move(args))) argv.push_back(a);
    return run_all(argv);
  };
  auto [rc, out] = cmd({"stats"});
  ASSERT_EQ(rc, 0) << "anybody who can reach the socket reads stats: " << out;
  std::tie(rc, out) = cmd({"quota", m->name, "--weight", "5"});
  EXPECT_EQ(rc, 1) << out;
  EXPECT_NE(out.find("setting a quota needs an admin (uid 65534 is not one)"),
            std::string::npos)
      << out;
  auto s = model_stats(*c, m->name);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->weight, 1.0) << "the refused call changed nothing";
}

}  // namespace
}  // namespace moepool::testing
