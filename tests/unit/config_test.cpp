// Tests of moepoold's configuration: TOML file, errors with file:line, defaults, flags.
#include "daemon/config.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "daemon/config_cli.h"

namespace moepool {
namespace {

namespace fs = std::filesystem;

// A temp dir removed at the end of each test.
class ConfigTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "moepool-config-test-XXXXXX").string();
    ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
    dir_ = fs::canonical(tmpl);
    fs::create_directories(dir_ / "models");
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::string write(const std::string& name, const std::string& text) {
    fs::path p = dir_ / name;
    std::ofstream(p) << text;
    return p.string();
  }
  // Loads `text` as a config file; returns the error message ("" on success).
  std::string load_error(const std::string& text) {
    auto r = load_config_file(write("c.toml", text), default_config());
    return r.ok() ? "" : r.status().message();
  }
  std::string file() const { return (dir_ / "c.toml").string(); }

  fs::path dir_;
};

// Restores an environment variable on scope exit.
class EnvGuard {
 public:
  explicit EnvGuard(const char* name) : name_(name) {
    const char* v = std::getenv(name);
    if (v != nullptr) old_ = v;
  }
  ~EnvGuard() {
    if (old_)
      ::setenv(name_, old_->c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  std::optional<std::string> old_;
};

// Parses `args` as moepoold's flags and returns the effective config.
Result<DaemonConfig> parse_flags(std::vector<std::string> args) {
  CLI::App app("moepoold");
  CliOverrides o;
  add_config_flags(app, &o);
  std::vector<const char*> argv{"moepoold"};
  for (auto& a : args) argv.push_back(a.c_str());
  try {
    app.parse(static_cast<int>(argv.size()), argv.data());
  } catch (const CLI::ParseError& e) {
    return InvalidArgument(std::string("parse: ") + e.what());
  }
  return load_effective_config(o);
}

TEST_F(ConfigTest, GoodFileSetsEveryKey) {
  std::string path = write("c.toml", R"(
[daemon]
socket = "/run/x/moepool.sock"
socket_mode = "0640"
state_dir = "/var/lib/x"
log_level = "debug"

[pool]
size = "512M"
segment_size = "64M"
lock = "on"

[models]
roots = [")" + (dir_ / "models").string() +
                                         R"(", "models/"]

[io]
mode = "pread"
direct = false
queue_depth = 128

[admin]
uids = [0, 1000]
groups = ["root"]
)");
  auto r = load_config_file(path, default_config());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  const DaemonConfig& c = *r;
  EXPECT_EQ(c.socket_path, "/run/x/moepool.sock");
  EXPECT_EQ(c.socket_mode, 0640u);
  EXPECT_EQ(c.state_dir, "/var/lib/x");
  EXPECT_EQ(c.log_level, "debug");
  EXPECT_EQ(c.pool_bytes, 512ull << 20);
  EXPECT_EQ(c.segment_bytes, 64ull << 20);
  EXPECT_EQ(c.lock_memory, "on");
  ASSERT_EQ(c.model_roots.size(), 2u);
  EXPECT_EQ(c.model_roots[0], (dir_ / "models").string());
  EXPECT_EQ(c.io_mode, "pread");
  EXPECT_FALSE(c.io_direct);
  EXPECT_EQ(c.queue_depth, 128u);
  EXPECT_EQ(c.admin_uids, (std::vector<uint32_t>{0, 1000}));
  EXPECT_EQ(c.admin_groups, (std::vector<std::string>{"root"}));
  EXPECT_EQ(c.config_path, path);

  DaemonConfig v = c;
  Status st = validate_config(&v);
  ASSERT_TRUE(st.ok()) << st.to_string();
  // The relative root is the same directory (relative to the file): deduplicated.
  EXPECT_EQ(v.model_roots, (std::vector<std::string>{(dir_ / "models").string()}));
}

TEST_F(ConfigTest, KeysAbsentFromTheFileKeepTheBase) {
  DaemonConfig base = default_config();
  auto r = load_config_file(write("c.toml", "[pool]\nsize = 1073741824\n"), base);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->pool_bytes, 1ull << 30);
  EXPECT_EQ(r->socket_path, base.socket_path);
  EXPECT_EQ(r->log_level, "info");
  EXPECT_EQ(r->queue_depth, 32u);
  EXPECT_TRUE(r->io_direct);
}

TEST_F(ConfigTest, SyntaxErrorNamesFileAndLine) {
  std::string e = load_error("[pool]\nsize = \"1G\"\nlock = = \"on\"\n");
  EXPECT_EQ(e.rfind(file() + ":3:", 0), 0u) << e;
}

TEST_F(ConfigTest, DuplicateKeyIsAnError) {
  std::string e = load_error("[pool]\nsize = \"1G\"\nsize = \"2G\"\n");
  EXPECT_EQ(e.rfind(file() + ":3:", 0), 0u) << e;
}

TEST_F(ConfigTest, UnknownKeyIsRejectedWithLineAndHint) {
  std::string e = load_error("[pool]\nsize = \"1G\"\nszie = \"2G\"\n");
  EXPECT_EQ(e.rfind(file() + ":3:1: ", 0), 0u) << e;
  EXPECT_NE(e.find("unknown key 'pool.szie'"), std::string::npos) << e;
  EXPECT_NE(e.find("did you mean 'size'"), std::string::npos) << e;
}

TEST_F(ConfigTest, UnknownSectionIsRejected) {
  std::string e = load_error("\n[pools]\nsize = \"1G\"\n");
  EXPECT_EQ(e.rfind(file() + ":2:", 0), 0u) << e;
  EXPECT_NE(e.find("unknown section or key 'pools'"), std::string::npos) << e;
}

TEST_F(ConfigTest, TopLevelKeyIsRejected) {
  std::string e = load_error("size = \"1G\"\n");
  EXPECT_EQ(e.rfind(file() + ":1:", 0), 0u) << e;
  EXPECT_NE(e.find("unknown"), std::string::npos) << e;
}

TEST_F(ConfigTest, WrongTypeNamesKeyAndTypes) {
  std::string e = load_error("[io]\n\nqueue_depth = \"32\"\n");
  EXPECT_EQ(e.rfind(file() + ":3:", 0), 0u) << e;
  EXPECT_NE(e.find("io.queue_depth: expected an integer, got a string"), std::string::npos) << e;

  e = load_error("[io]\ndirect = \"yes\"\n");
  EXPECT_EQ(e.rfind(file() + ":2:", 0), 0u) << e;
  EXPECT_NE(e.find("io.direct"), std::string::npos) << e;

  e = load_error("[models]\nroots = \"/srv\"\n");
  EXPECT_EQ(e.rfind(file() + ":2:", 0), 0u) << e;
  EXPECT_NE(e.find("models.roots: expected an array"), std::string::npos) << e;

  e = load_error("pool = 5\n");
  EXPECT_EQ(e.rfind(file() + ":1:", 0), 0u) << e;
  EXPECT_NE(e.find("must be a table"), std::string::npos) << e;
}

TEST_F(ConfigTest, BadSizeNamesKeyAndText) {
  std::string e = load_error("[pool]\nsize = \"12Q\"\n");
  EXPECT_EQ(e.rfind(file() + ":2:", 0), 0u) << e;
  EXPECT_NE(e.find("pool.size"), std::string::npos) << e;
  EXPECT_NE(e.find("12Q"), std::string::npos) << e;
}

TEST_F(ConfigTest, PoolBelowOneMiBIsRejected) {
  std::string e = load_error("[pool]\nsize = \"512K\"\n");
  EXPECT_EQ(e.rfind(file() + ":2:", 0), 0u) << e;
  EXPECT_NE(e.find("below the minimum of 1 MiB"), std::string::npos) << e;
}

TEST_F(ConfigTest, BadLogLevelListsTheChoices) {
  std::string e = load_error("[daemon]\nlog_level = \"verbose\"\n");
  EXPECT_EQ(e.rfind(file() + ":2:", 0), 0u) << e;
  EXPECT_NE(e.find("'verbose' is not one of trace|debug|info|warn|error"), std::string::npos) << e;
}

TEST_F(ConfigTest, OutOfRangeValuesAreRejected) {
  EXPECT_NE(load_error("[io]\nqueue_depth = 0\n").find(":2:"), std::string::npos);
  EXPECT_NE(load_error("[io]\nqueue_depth = 4097\n").find("out of range"), std::string::npos);
  EXPECT_NE(load_error("[io]\nmode = \"aio\"\n").find("io.mode"), std::string::npos);
  EXPECT_NE(load_error("[pool]\nlock = \"maybe\"\n").find("pool.lock"), std::string::npos);
  EXPECT_NE(load_error("[pool]\nsegment_size = 1000\n").find("4 KiB"), std::string::npos);
  EXPECT_NE(load_error("[daemon]\nsocket_mode = \"0999\"\n").find("octal"), std::string::npos);
  EXPECT_NE(load_error("[daemon]\nsocket_mode = \"0060\"\n").find("owner"), std::string::npos);
  EXPECT_NE(load_error("[admin]\nuids = [-1]\n").find("not a valid uid"), std::string::npos);
}

TEST_F(ConfigTest, SocketModeAcceptsTomlOctalInteger) {
  auto r = load_config_file(write("c.toml", "[daemon]\nsocket_mode = 0o600\n"), default_config());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->socket_mode, 0600u);
}

TEST_F(ConfigTest, MissingModelRootNamesLineAndPath) {
  std::string path =
      write("c.toml", "[models]\nroots = [\n  \"/nonexistent/moepool-models\",\n]\n");
  auto r = load_config_file(path, default_config());
  ASSERT_TRUE(r.ok()) << r.status().to_string();  // checked after the flags, see below
  DaemonConfig c = *r;
  Status s = validate_config(&c);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.message().rfind(file() + ":3:3: models.roots: /nonexistent/moepool-models", 0), 0u)
      << s.message();
}

TEST_F(ConfigTest, ModelRootFlagReplacesAMissingRootOfTheFile) {
  std::string path = write("c.toml", "[models]\nroots = [\"/nonexistent/moepool-models\"]\n");
  auto r = parse_flags({"--config", path, "--model-root", (dir_ / "models").string()});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->model_roots, (std::vector<std::string>{(dir_ / "models").string()}));

  r = parse_flags({"--config", path});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find(":2:"), std::string::npos) << r.status().message();
}

TEST_F(ConfigTest, MissingFileIsNotFound) {
  auto r = load_config_file((dir_ / "absent.toml").string(), default_config());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kNotFound);
  EXPECT_NE(r.status().message().find("absent.toml"), std::string::npos);
}

TEST_F(ConfigTest, DefaultsUseXdgRuntimeDir) {
  EnvGuard guard("XDG_RUNTIME_DIR");
  ::setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
  DaemonConfig c = default_config();
  EXPECT_EQ(c.socket_path, "/run/user/4242/moepool/moepool.sock");
  EXPECT_EQ(c.state_dir.rfind("/run/user/4242/moepool/", 0), 0u) << c.state_dir;
  EXPECT_EQ(c.pool_bytes, 256ull << 20);
  EXPECT_EQ(c.lock_memory, "auto");
  EXPECT_TRUE(c.model_roots.empty());
  EXPECT_TRUE(c.config_path.empty());
}

TEST_F(ConfigTest, DefaultsFallBackToTmpPerUid) {
  EnvGuard guard("XDG_RUNTIME_DIR");
  ::unsetenv("XDG_RUNTIME_DIR");
  DaemonConfig c = default_config();
  std::string base = "/tmp/moepool-" + std::to_string(::getuid()) + "/";
  EXPECT_EQ(c.socket_path, base + "moepool.sock");
  EXPECT_EQ(c.state_dir.rfind(base, 0), 0u) << c.state_dir;
}

TEST_F(ConfigTest, DefaultsValidate) {
  DaemonConfig c = default_config();
  ASSERT_TRUE(validate_config(&c).ok());
  EXPECT_EQ(c.segment_bytes, 64ull << 20);  // auto: min(256M, 64M)
}

TEST_F(ConfigTest, AutoSegmentDividesThePool) {
  DaemonConfig c = default_config();
  c.pool_bytes = 16ull << 20;
  ASSERT_TRUE(validate_config(&c).ok());
  EXPECT_EQ(c.segment_bytes, 16ull << 20);  // a small pool is one segment

  c = default_config();
  c.pool_bytes = 300ull << 20;  // 64M does not divide it; 60M does
  ASSERT_TRUE(validate_config(&c).ok());
  EXPECT_EQ(c.segment_bytes, 60ull << 20);

  c = default_config();
  c.pool_bytes = 65537ull * 4096;  // a prime number of pages: no 16M..64M segment divides it
  Status s = validate_config(&c);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("pool.segment_size"), std::string::npos) << s.message();
}

TEST_F(ConfigTest, ExplicitSegmentMustDivideThePool) {
  DaemonConfig c = default_config();
  c.pool_bytes = 256ull << 20;
  c.segment_bytes = 48ull << 20;
  Status s = validate_config(&c);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("does not divide"), std::string::npos) << s.message();
}

TEST_F(ConfigTest, ValidateRejectsOverlongSocketPath) {
  DaemonConfig c = default_config();
  c.socket_path = "/" + std::string(120, 's');
  Status s = validate_config(&c);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("daemon.socket"), std::string::npos) << s.message();
}

TEST_F(ConfigTest, ValidateRejectsUnknownAdminGroup) {
  DaemonConfig c = default_config();
  c.admin_groups = {"no-such-group-moepool-test"};
  Status s = validate_config(&c);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("no-such-group-moepool-test"), std::string::npos) << s.message();
}

TEST_F(ConfigTest, FlagsWinOverFileWhichWinsOverDefaults) {
  fs::create_directories(dir_ / "other");
  std::string path = write("c.toml", R"(
[daemon]
socket = "/run/file/moepool.sock"
log_level = "warn"
[pool]
size = "1G"
lock = "off"
[models]
roots = ["models"]
[io]
mode = "pread"
)");
  auto r =
      parse_flags({"--config", path, "--socket", (dir_ / "s.sock").string(), "--pool-size", "512M",
                   "--model-root", (dir_ / "other").string(), "--model-root",
                   (dir_ / "models").string(), "--no-direct", "--lock", "on", "--log-level",
                   "debug", "--segment-size", "128M", "--state-dir", (dir_ / "state").string()});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->socket_path, (dir_ / "s.sock").string());
  EXPECT_EQ(r->pool_bytes, 512ull << 20);
  EXPECT_EQ(r->segment_bytes, 128ull << 20);
  EXPECT_EQ(r->model_roots,
            (std::vector<std::string>{(dir_ / "other").string(), (dir_ / "models").string()}));
  EXPECT_FALSE(r->io_direct);
  EXPECT_EQ(r->lock_memory, "on");
  EXPECT_EQ(r->log_level, "debug");
  EXPECT_EQ(r->state_dir, (dir_ / "state").string());
  EXPECT_EQ(r->io_mode, "pread");  // from the file: no flag given
  EXPECT_EQ(r->config_path, path);

  // Without flags the file wins over the defaults.
  auto f = parse_flags({"--config", path});
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->socket_path, "/run/file/moepool.sock");
  EXPECT_EQ(f->pool_bytes, 1ull << 30);
  EXPECT_EQ(f->lock_memory, "off");
  EXPECT_EQ(f->log_level, "warn");
  EXPECT_TRUE(f->io_direct);
}

TEST_F(ConfigTest, PolicyNameFromFileAndFlagWithBadNamesRejected) {
  EXPECT_EQ(default_config().policy_name, "default");
  auto c = load_config_file(write("c.toml", "[policy]\nname = \"lru\"\n"), default_config());
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(c->policy_name, "lru");
  std::string e = load_error("[policy]\nname = \"fifo\"\n");
  EXPECT_EQ(e.rfind(file() + ":2:", 0), 0u) << e;
  EXPECT_NE(e.find("'fifo' is not one of default|lru"), std::string::npos) << e;

  auto f = parse_flags({"--model-root", (dir_ / "models").string(), "--policy", "lru"});
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->policy_name, "lru");
  EXPECT_NE(describe_config(*f).find("policy.name:        lru"), std::string::npos);
  f = parse_flags({"--policy", "belady"});
  ASSERT_FALSE(f.ok());
  EXPECT_NE(f.status().message().find("--policy: 'belady' is not one of default|lru"),
            std::string::npos)
      << f.status().message();
}

TEST_F(ConfigTest, BadFlagsNameTheFlag) {
  auto r = parse_flags({"--pool-size", "12Q"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--pool-size"), std::string::npos);
  EXPECT_NE(r.status().message().find("12Q"), std::string::npos);

  r = parse_flags({"--lock", "maybe"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("--lock"), std::string::npos);

  r = parse_flags({"--pool-size", "512K"});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("pool.size"), std::string::npos);

  r = parse_flags({"--model-root", (dir_ / "absent").string()});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("absent"), std::string::npos);
}

TEST_F(ConfigTest, RelativeFlagPathsBecomeAbsolute) {
  auto r = parse_flags({"--socket", "rel/s.sock", "--state-dir", "./st/../state"});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->socket_path, (fs::current_path() / "rel/s.sock").string());
  EXPECT_EQ(r->state_dir, (fs::current_path() / "state").string());
}

TEST_F(ConfigTest, PrepareDirsCreatesSocketAndStateDirs) {
  DaemonConfig c = default_config();
  c.socket_path = (dir_ / "run/a/moepool.sock").string();
  c.state_dir = (dir_ / "state/b").string();
  Status s = prepare_config_dirs(c);
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_TRUE(fs::is_directory(dir_ / "run/a"));
  EXPECT_TRUE(fs::is_directory(dir_ / "state/b"));
  EXPECT_EQ(fs::status(dir_ / "run/a").permissions() & fs::perms::others_all, fs::perms::none);
  EXPECT_TRUE(prepare_config_dirs(c).ok());  // idempotent
}

TEST_F(ConfigTest, PrepareDirsRefusesSymlinkAndWorldWritable) {
  fs::create_directories(dir_ / "real");
  fs::create_directory_symlink(dir_ / "real", dir_ / "link");
  DaemonConfig c = default_config();
  c.socket_path = (dir_ / "link/moepool.sock").string();
  c.state_dir = (dir_ / "state").string();
  Status s = prepare_config_dirs(c);
  EXPECT_FALSE(s.ok());
  EXPECT_NE(s.message().find("not a directory"), std::string::npos) << s.message();

  fs::create_directories(dir_ / "open");
  fs::permissions(dir_ / "open", fs::perms::all);  // 0777, no sticky bit
  c.socket_path = (dir_ / "open/moepool.sock").string();
  s = prepare_config_dirs(c);
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.to_string();
}

TEST_F(ConfigTest, PrepareDirsRefusesADirOwnedBySomeoneElse) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to chown a directory to another uid";
  fs::create_directories(dir_ / "theirs");
  ASSERT_EQ(::chown((dir_ / "theirs").c_str(), 65534, 65534), 0);
  DaemonConfig c = default_config();
  c.socket_path = (dir_ / "theirs/moepool.sock").string();
  c.state_dir = (dir_ / "state").string();
  Status s = prepare_config_dirs(c);
  EXPECT_EQ(s.code(), Code::kPermissionDenied) << s.to_string();
  EXPECT_NE(s.message().find("owned by uid 65534"), std::string::npos) << s.message();
}

// The documented sample config must load (with its model root pointed at a real dir).
TEST_F(ConfigTest, SampleConfigLoads) {
  std::ifstream in(std::string(MOEPOOL_SOURCE_DIR) + "/config/moepoold.toml");
  ASSERT_TRUE(in.good());
  std::stringstream ss;
  ss << in.rdbuf();
  std::string text = ss.str();
  const std::string root = "/var/lib/moepool/models";
  size_t at = text.find("\"" + root + "\"");
  ASSERT_NE(at, std::string::npos) << "sample config no longer names " << root;
  text.replace(at + 1, root.size(), (dir_ / "models").string());
  auto r = load_config_file(write("sample.toml", text), default_config());
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->socket_path, "/run/moepool/moepool.sock");
  EXPECT_EQ(r->state_dir, "/var/lib/moepool");
  DaemonConfig c = *r;
  c.admin_groups.clear();  // the group may not exist on the test machine
  Status s = validate_config(&c);
  EXPECT_TRUE(s.ok()) << s.to_string();
}

}  // namespace
}  // namespace moepool
