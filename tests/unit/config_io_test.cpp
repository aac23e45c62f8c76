// Tests of the [io] config keys (mode, direct auto|on|off, max_request_bytes,
// prefetch_bytes_in_flight), their errors with file:line, the flags, and the io.direct =
// auto decision as a pure function of (file bytes, available bytes).
#include <gtest/gtest.h>
#include <stdlib.h>

#include <CLI/CLI.hpp>
#include <filesystem>
#include <fstream>

#include "daemon/config.h"
#include "daemon/config_cli.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

class ConfigIoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "moepool-config-io-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = fs::canonical(tmpl);
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  Result<DaemonConfig> load(const std::string& text) {
    return load_config_file(write("c.toml", text), default_config());
  }
  // The error loading `text` gives ("" when it loads).
  std::string load_error(const std::string& text) {
    auto r = load(text);
    return r.ok() ? "" : r.status().message();
  }
  std::string file() const { return (dir_ / "c.toml").string(); }

  fs::path dir_;
};

TEST_F(ConfigIoTest, DefaultsAreAutoAndSizedToTheDevice) {
  DaemonConfig c = default_config();
  EXPECT_EQ(c.io_mode, "auto");
  EXPECT_EQ(c.io_direct, kIoDirectAuto);
  EXPECT_EQ(c.max_request_bytes, 1u << 20);
  EXPECT_EQ(c.prefetch_bytes_in_flight, 0u);  // auto
  // queue_depth * max_request_bytes / 2: half the device's depth left to demand reads.
  EXPECT_EQ(effective_prefetch_bytes(c), 32ull * (1 << 20) / 2);
  c.queue_depth = 64;
  c.max_request_bytes = 512 << 10;
  EXPECT_EQ(effective_prefetch_bytes(c), 64ull * (512 << 10) / 2);
  c.prefetch_bytes_in_flight = 8 << 20;
  EXPECT_EQ(effective_prefetch_bytes(c), 8u << 20);
}

TEST_F(ConfigIoTest, ParsesEveryIoKey) {
  auto r = load(
      "[io]\nmode = \"pread\"\ndirect = \"on\"\nqueue_depth = 8\n"
      "max_request_bytes = \"256K\"\nprefetch_bytes_in_flight = \"4M\"\n");
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->io_mode, "pread");
  EXPECT_EQ(r->io_direct, kIoDirectOn);
  EXPECT_EQ(r->queue_depth, 8u);
  EXPECT_EQ(r->max_request_bytes, 256u << 10);
  EXPECT_EQ(r->prefetch_bytes_in_flight, 4u << 20);
  EXPECT_EQ(effective_prefetch_bytes(*r), 4u << 20);

  auto a = load("[io]\ndirect = \"auto\"\nprefetch_bytes_in_flight = \"auto\"\n");
  ASSERT_TRUE(a.ok()) << a.status().to_string();
  EXPECT_EQ(a->io_direct, kIoDirectAuto);
  EXPECT_EQ(a->prefetch_bytes_in_flight, 0u);
  auto off = load("[io]\ndirect = \"off\"\nmax_request_bytes = 65536\n");
  ASSERT_TRUE(off.ok()) << off.status().to_string();
  EXPECT_EQ(off->io_direct, kIoDirectOff);
  EXPECT_EQ(off->max_request_bytes, 65536u);
}

TEST_F(ConfigIoTest, DirectStillAcceptsBooleans) {
  auto t = load("[io]\ndirect = true\n");
  ASSERT_TRUE(t.ok()) << t.status().to_string();
  EXPECT_EQ(t->io_direct, kIoDirectOn);
  auto f = load("[io]\ndirect = false\n");
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->io_direct, kIoDirectOff);
}

TEST_F(ConfigIoTest, BadValuesNameTheKeyAndLine) {
  struct Case {
    std::string text, want;
  };
  const Case cases[] = {
      {"[io]\n\ndirect = \"yes\"\n", ":3:10: io.direct: 'yes' is not one of auto|on|off"},
      {"[io]\ndirect = 1\n", ":2:10: io.direct: expected"},
      {"[io]\nmode = \"aio\"\n", ":2:8: io.mode: 'aio' is not one of auto|io_uring|pread"},
      {"[io]\nmax_request_bytes = \"1000\"\n", ":2:21: io.max_request_bytes: 1000 B is out of range"},
      {"[io]\nmax_request_bytes = \"6000\"\n",
       ":2:21: io.max_request_bytes: must be a multiple of 4 KiB"},
      {"[io]\nmax_request_bytes = \"128M\"\n", ":2:21: io.max_request_bytes: 128.00 MiB is out of range"},
      {"[io]\nmax_request_bytes = \"auto\"\n", ":2:21: io.max_request_bytes:"},
      {"[io]\nmax_request_bytes = -4096\n", ":2:21: io.max_request_bytes: must not be negative"},
      {"[io]\nprefetch_bytes_in_flight = \"12Q\"\n", ":2:28: io.prefetch_bytes_in_flight:"},
      {"[io]\nprefetch_bytes_in_flight = 5000\n",
       ":2:28: io.prefetch_bytes_in_flight: must be a multiple of 4 KiB"},
      {"[io]\nprefetch_bytes_in_flight = true\n", ":2:28: io.prefetch_bytes_in_flight: expected"},
      {"[io]\nmax_request_size = \"1M\"\n", ":2:1: unknown key 'io.max_request_size'"},
  };
  for (const Case& c : cases) {
    std::string e = load_error(c.text);
    EXPECT_EQ(e.rfind(file() + c.want, 0), 0u) << "config:\n" << c.text << "error: " << e;
  }
}

TEST_F(ConfigIoTest, ValidateRefusesValuesFlagsCouldSet) {
  DaemonConfig c = default_config();
  c.max_request_bytes = 4095;
  Status st = validate_config(&c);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("io.max_request_bytes"), std::string::npos) << st.message();
  c = default_config();
  c.prefetch_bytes_in_flight = 100;
  st = validate_config(&c);
  EXPECT_NE(st.message().find("io.prefetch_bytes_in_flight"), std::string::npos) << st.message();
  c = default_config();
  c.io_direct = static_cast<IoDirect>(7);
  st = validate_config(&c);
  EXPECT_NE(st.message().find("io.direct"), std::string::npos) << st.message();
}

TEST_F(ConfigIoTest, DirectFlagOverridesTheFile) {
  CliOverrides o;
  o.direct = "on";
  DaemonConfig c = default_config();
  ASSERT_TRUE(apply_overrides(o, &c).ok());
  EXPECT_EQ(c.io_direct, kIoDirectOn);
  o.direct = "sometimes";
  Status st = apply_overrides(o, &c);
  EXPECT_FALSE(st.ok());
  EXPECT_NE(st.message().find("--direct: 'sometimes' is not one of auto|on|off"),
            std::string::npos)
      << st.message();
  CliOverrides no;
  no.no_direct = true;
  c = default_config();
  ASSERT_TRUE(apply_overrides(no, &c).ok());
  EXPECT_EQ(c.io_direct, kIoDirectOff);
}

TEST(ChooseDirectReads, AutoReadsBufferedWhatFitsInFreeRam) {
  const uint64_t kGiB = 1ull << 30;
  DirectChoice fits = choose_direct_reads(kIoDirectAuto, kGiB + kGiB / 5, 10 * kGiB);
  EXPECT_FALSE(fits.direct);
  EXPECT_NE(fits.why.find("1.20 GiB fit in 10.00 GiB available"), std::string::npos) << fits.why;

  DirectChoice big = choose_direct_reads(kIoDirectAuto, 40 * kGiB, 10 * kGiB);
  EXPECT_TRUE(big.direct);
  EXPECT_NE(big.why.find("40.00 GiB > 10.00 GiB available"), std::string::npos) << big.why;

  // The boundary: exactly the available bytes still fit; one byte more does not.
  EXPECT_FALSE(choose_direct_reads(kIoDirectAuto, 5 * kGiB, 5 * kGiB).direct);
  EXPECT_TRUE(choose_direct_reads(kIoDirectAuto, 5 * kGiB + 1, 5 * kGiB).direct);
  // No free RAM at all (the pool took it): everything goes O_DIRECT.
  EXPECT_TRUE(choose_direct_reads(kIoDirectAuto, 4096, 0).direct);
}

TEST(ChooseDirectReads, OnAndOffAreObeyedWhateverTheSizes) {
  DirectChoice on = choose_direct_reads(kIoDirectOn, 1, 1ull << 40);
  EXPECT_TRUE(on.direct);
  EXPECT_EQ(on.why, "io.direct = on");
  DirectChoice off = choose_direct_reads(kIoDirectOff, 1ull << 40, 0);
  EXPECT_FALSE(off.direct);
  EXPECT_EQ(off.why, "io.direct = off");
}

TEST_F(ConfigIoTest, MemAvailableIsReadFromMeminfo) {
  std::string p = write("meminfo",
                        "MemTotal:       24000000 kB\nMemFree:         1000 kB\n"
                        "MemAvailable:   10240 kB\nBuffers:  1 kB\n");
  auto v = mem_available_bytes(p);
  ASSERT_TRUE(v.ok()) << v.status().to_string();
  EXPECT_EQ(*v, 10240u * 1024);
  auto bad = mem_available_bytes(write("bad", "MemTotal: 1 kB\n"));
  EXPECT_FALSE(bad.ok());
  EXPECT_NE(bad.status().message().find("MemAvailable"), std::string::npos);
  auto real = mem_available_bytes();
  ASSERT_TRUE(real.ok()) << real.status().to_string();
  EXPECT_GT(*real, 0u);
}

}  // namespace
}  // namespace moepool
