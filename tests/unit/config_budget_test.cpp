// Tests of the [quota."<model>"], [popularity] and [prefetch] config sections
// (daemon/config_budget.cpp): values, defaults, and errors with file:line:col.
#include <gtest/gtest.h>

#include <fstream>

#include "daemon/config.h"
#include "tests/unit/temp_dir.h"

namespace moepool {
namespace {

class ConfigBudgetTest : public ::testing::Test {
 protected:
  Result<DaemonConfig> load(const std::string& text) {
    std::ofstream(path_) << text;
    return load_config_file(path_, default_config());
  }
  std::string error(const std::string& text) {
    auto r = load(text);
    if (!r.ok()) return r.status().message();
    Status st = validate_config(&*r);
    return st.ok() ? "" : st.message();
  }
  TempDir dir_{"moepool_config_budget_test"};
  std::string path_ = dir_.file("c.toml");
};

TEST_F(ConfigBudgetTest, Defaults) {
  DaemonConfig c = default_config();
  EXPECT_TRUE(c.quotas.empty());
  EXPECT_EQ(c.popularity_save_seconds, 30u);
  EXPECT_TRUE(c.warmup);
  EXPECT_TRUE(c.prefetch_predictor);
  EXPECT_EQ(c.prefetch_min_probability, 0.5) << "moepool-sim's default";
  EXPECT_EQ(c.prefetch_distance, 3u) << "moepool-sim's default";
}

TEST_F(ConfigBudgetTest, ParsesQuotasPopularityAndPrefetch) {
  auto c = load(R"([quota."Qwen3 30B-A3B"]
weight = 2.5
min = "64M"
max = "1G"

[quota.small]
weight = 1

[popularity]
save_interval = 5
warmup = false

[prefetch]
predictor = false
min_probability = 0.7
distance = 2
)");
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  ASSERT_EQ(c->quotas.size(), 2u);
  EXPECT_EQ(c->quotas[0].model, "Qwen3 30B-A3B");
  EXPECT_EQ(c->quotas[0].quota, (Quota{2.5, 64ull << 20, 1ull << 30}));
  EXPECT_EQ(c->quotas[0].origin, path_ + ":1:8");
  EXPECT_EQ(c->quotas[1].model, "small");
  EXPECT_EQ(c->quotas[1].quota, (Quota{1, 0, 0}));
  EXPECT_EQ(c->popularity_save_seconds, 5u);
  EXPECT_FALSE(c->warmup);
  EXPECT_FALSE(c->prefetch_predictor);
  EXPECT_EQ(c->prefetch_min_probability, 0.7);
  EXPECT_EQ(c->prefetch_distance, 2u);
  c->pool_bytes = 2ull << 30;
  EXPECT_TRUE(validate_config(&*c).ok());
  std::string d = describe_config(*c);
  EXPECT_NE(d.find("quota.\"Qwen3 30B-A3B\": weight 2.5, min 64.00 MiB, max 1.00 GiB"),
            std::string::npos)
      << d;
  EXPECT_NE(d.find("prefetch.min_probability: 0.7"), std::string::npos) << d;
}

TEST_F(ConfigBudgetTest, BadValuesNameFileLineAndKey) {
  struct Case {
    std::string text, error;
  };
  std::vector<Case> cases = {
      {"[quota.m]\nweight = 0\n", ":2:10: quota.\"m\".weight: must be > 0"},
      {"[quota.m]\nweight = -1\n", ":2:10: quota.\"m\".weight"},
      {"[quota.m]\nweight = \"x\"\n", ":2:10: quota.\"m\".weight: expected a number"},
      {"[quota.m]\nmin = \"12Q\"\n", ":2:7: quota.\"m\".min"},
      {"[quota.m]\nmin = \"8M\"\nmax = \"4M\"\n", ":1:8: quota.\"m\": max 4.00 MiB is below min"},
      {"[quota.m]\nmaxx = 1\n", ":2:1: unknown key 'quota.\"m\".maxx' (did you mean 'max'?)"},
      {"quota = 3\n", ":1:9: 'quota' must hold tables"},
      {"[quota]\nm = 3\n", ":2:5: quota.\"m\" must be a table"},
      {"[popularity]\nsave_interval = 0\n", ":2:17: popularity.save_interval: 0 is out of range"},
      {"[popularity]\nsave_intervall = 3\n", "(did you mean 'save_interval'?)"},
      {"[popularity]\nwarmup = 1\n", "popularity.warmup: expected a boolean"},
      {"[prefetch]\nmin_probability = 1.5\n", ":2:19: prefetch.min_probability: 1.5 is out"},
      {"[prefetch]\ndistance = 0\n", ":2:12: prefetch.distance: 0 is out of range 1..8"},
      {"[prefetch]\ndistance = \"far\"\n", "prefetch.distance"},
      {"[prefetch]\npredictor = \"yes\"\n", "prefetch.predictor: expected a boolean"},
      {"[prefech]\n", "(did you mean 'prefetch'?)"},
      {"[quota.a]\nmin = \"200M\"\n[quota.b]\nmin = \"100M\"\n",
       "quota.\"b\".min: the quotas' minimums sum to 300.00 MiB, more than pool.size 256.00 MiB"},
  };
  for (const Case& c : cases) {
    std::string e = error(c.text);
    EXPECT_NE(e.find(c.error), std::string::npos) << "config:\n" << c.text << "got: " << e
                                                  << "\nwant: " << c.error;
    if (c.error[0] == ':') EXPECT_EQ(e.rfind(path_, 0), 0u) << e;
  }
}

}  // namespace
}  // namespace moepool
