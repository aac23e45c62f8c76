// The I/O path through real processes: moepoold forced to the pread path by its config,
// and moepoold-faulty (a device that fails, shortens or stalls one read) serving a worker
// through libmoepool. Checks that a failed read fails the waiting acquire with an error
// naming the model, layer and expert, that its slot is never served (a later acquire reads
// the file again and gets its bytes), that the errors show in `moepoolctl stats` (text and
// --json, with the engine's io block), that a stalled read completes once released, and
// that a prefetch cancelled while loading frees its slot without an error.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <fstream>
#include <future>
#include <optional>

#include "common/catalog.h"
#include "tests/integration/daemon_harness.h"

namespace moepool::testing {
namespace {

// q8_0 [256, 512]: 139264 bytes (34 x 4 KiB) per expert and projection.
std::vector<std::string> small_model() {
  return {"--layers", "2", "--experts", "8", "--embd", "256", "--ffn", "512", "--type", "q8_0"};
}

// `json` without whitespace (moepoolctl writes no spaces inside strings it checks here).
std::string squeeze(const std::string& json) {
  std::string out;
  for (char ch : json)
    if (!isspace(static_cast<unsigned char>(ch))) out += ch;
  return out;
}

// The value of the field at `path` (object keys from the root, e.g. {"io", "demand",
// "errors"}) of squeezed JSON: the text up to the next ',' or '}' of that object.
// nullopt when a key is missing.
std::optional<std::string> json_field(const std::string& json, std::vector<std::string> path) {
  size_t at = 0;
  for (size_t i = 0; i < path.size(); ++i) {
    // Search only within the current object: keys at depth 1 below `at`.
    std::string key = "\"" + path[i] + "\":";
    int depth = 0;
    size_t found = std::string::npos;
    for (size_t p = at; p < json.size(); ++p) {
      char c = json[p];
      if (c == '"') {  // a string: a key when it matches at depth 1
        if (depth == 1 && json.compare(p, key.size(), key) == 0) {
          found = p + key.size();
          break;
        }
        size_t end = json.find('"', p + 1);
        while (end != std::string::npos && json[end - 1] == '\\') end = json.find('"', end + 1);
        if (end == std::string::npos) return std::nullopt;
        p = end;
      } else if (c == '{' || c == '[') {
        ++depth;
      } else if (c == '}' || c == ']') {
        if (--depth == 0) return std::nullopt;
      }
    }
    if (found == std::string::npos) return std::nullopt;
    at = found;
  }
  size_t end = at;
  int depth = 0;
  for (; end < json.size(); ++end) {
    char c = json[end];
    if (c == '{' || c == '[') ++depth;
    if ((c == '}' || c == ']') && depth-- == 0) break;
    if (c == ',' && depth == 0) break;
  }
  return json.substr(at, end - at);
}

uint64_t json_u64(const std::string& json, std::vector<std::string> path) {
  auto v = json_field(json, path);
  std::string where;
  for (const auto& p : path) where += "." + p;
  EXPECT_TRUE(v.has_value()) << where << " missing in " << json;
  if (!v || v->empty() || !isdigit(static_cast<unsigned char>((*v)[0]))) {
    ADD_FAILURE() << where << " is not a number in " << json;
    return 0;
  }
  return std::stoull(*v);
}

class IoFaultTest : public DaemonFixture {
 protected:
  // Starts `program` with a config file holding `io_toml` plus no predictor (so that only
  // the test's own reads reach the device, in the order it issues them) and `flags`.
  void start(const std::string& program, const std::string& io_toml,
             std::vector<std::string> flags = {}) {
    const std::string config = (dir_ / "moepoold.toml").string();
    // No reads but the test's own: no predictor, and no warm-up (its plan counts the
    // acquires made since the open, so it could re-read the test's expert in between).
    std::ofstream(config) << io_toml << "\n[prefetch]\npredictor = false\n"
                          << "[popularity]\nwarmup = false\n";
    flags.insert(flags.begin(), {"--config", config});
    start_daemon("16M", flags, program);
    model_path_ = synth("m.gguf", small_model());
    auto catalog = Catalog::open(model_path_);
    ASSERT_TRUE(catalog.ok()) << catalog.status().to_string();
    catalog_ = std::move(catalog).value();
    client_ = connect();
    ASSERT_NE(client_, nullptr);
    auto m = client_->open_model(model_path_);
    ASSERT_TRUE(m.ok()) << m.status().to_string();
    model_ = *m;
  }

  // Every byte of every lease equals the model file.
  void expect_bytes_match_file(uint32_t layer, const std::vector<Lease>& leases) {
    const MoeLayer* moe = catalog_.layer(layer);
    ASSERT_NE(moe, nullptr);
    for (const Lease& l : leases) {
      ASSERT_EQ(l.projections.size(), moe->projections.size());
      for (size_t p = 0; p < l.projections.size(); ++p) {
        Extent x = moe->projections[p].expert_extent(l.expert);
        ASSERT_EQ(l.projections[p].bytes, x.bytes);
        std::vector<uint8_t> want = file_bytes(model_path_, x.offset, x.bytes);
        EXPECT_EQ(memcmp(l.projections[p].data, want.data(), x.bytes), 0)
            << "expert " << l.expert << " projection " << p << " differs from the file";
      }
    }
  }

  std::string ctl_stats(bool json) {
    std::vector<std::string> argv = {bin("moepoolctl"), "--socket", socket_, "stats"};
    if (json) argv.push_back("--json");
    auto [rc, out] = run(argv);
    EXPECT_EQ(rc, 0) << out;
    return json ? squeeze(out) : out;
  }

  std::string model_hex() const {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%016" PRIx64, model_.id);
    return buf;
  }

  // Polls the daemon's stats until `pred` holds (at most ~10 s of 20 ms polls).
  bool poll_stats(const std::function<bool(const PoolStats&)>& pred) {
    for (int i = 0; i < 500; ++i) {
      auto st = client_->stats();
      if (st.ok() && pred(*st)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));  // poll interval
    }
    return false;
  }

  // A failed first read: the acquire fails naming the expert; its slot is not served; the
  // next acquire reads again and gets the file's bytes; the error is in the stats.
  void expect_failed_read_then_reread(const std::string& what) {
    const std::vector<uint32_t> e = {5};
    auto bad = client_->acquire(model_.id, 1, e);
    ASSERT_FALSE(bad.ok()) << what << ": the failed read was served";
    const std::string msg = bad.status().message();
    EXPECT_NE(msg.find("expert 5"), std::string::npos) << msg;
    EXPECT_NE(msg.find("layer 1"), std::string::npos) << msg;
    EXPECT_NE(msg.find("model " + model_.name), std::string::npos) << msg;
    EXPECT_NE(msg.find(what), std::string::npos) << msg;

    auto st = client_->stats();
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->read_errors, 1u);
    EXPECT_EQ(st->reads, 0u);
    EXPECT_EQ(st->used_bytes, 0u) << "the failed slot was freed";

    auto good = client_->acquire(model_.id, 1, e);
    ASSERT_TRUE(good.ok()) << good.status().to_string();
    EXPECT_FALSE((*good)[0].hit) << "read again, not served from the failed slot";
    expect_bytes_match_file(1, *good);
    st = client_->stats();
    ASSERT_TRUE(st.ok());
    EXPECT_EQ(st->reads, 1u);
    EXPECT_EQ(st->read_errors, 1u);
    ASSERT_TRUE(client_->release(*good).ok());

    std::string json = ctl_stats(true);
    EXPECT_EQ(json_u64(json, {"read_errors"}), 1u) << json;
    EXPECT_EQ(json_u64(json, {"io", "demand", "errors"}), 1u) << json;
    EXPECT_EQ(json_u64(json, {"io", "demand", "requests"}), 2u) << json;
    EXPECT_GE(json_u64(json, {"io", "demand", "reads"}), 2u) << json;
    EXPECT_EQ(json_u64(json, {"io", "prefetch", "errors"}), 0u) << json;
    std::string text = ctl_stats(false);
    EXPECT_NE(text.find("read errors"), std::string::npos) << text;
    EXPECT_NE(text.find("IO_CLASS"), std::string::npos) << text;
    EXPECT_NE(text.find("demand"), std::string::npos) << text;
  }

  std::string model_path_;
  Catalog catalog_;
  std::unique_ptr<Client> client_;
  ModelInfo model_;
};

TEST_F(IoFaultTest, PreadModeFromTheConfigServesTheFilesBytes) {
  for (const char* direct : {"on", "off"}) {
    SCOPED_TRACE(std::string("io.direct = ") + direct);
    client_.reset();
    daemon_ = Process();
    fs::remove_all(dir_ / "models");
    fs::remove_all(dir_ / "state");
    fs::create_directories(dir_ / "models");
    start("moepoold", std::string("[io]\nmode = \"pread\"\ndirect = \"") + direct + "\"\n");
    const std::vector<uint32_t> e = {0, 3, 7};
    for (uint32_t layer : {0u, 1u}) {
      auto l = client_->acquire(model_.id, layer, e);
      ASSERT_TRUE(l.ok()) << l.status().to_string();
      expect_bytes_match_file(layer, *l);
      ASSERT_TRUE(client_->release(*l).ok());
    }
    std::string json = ctl_stats(true);
    auto mode = json_field(json, {"io", "mode"});
    ASSERT_TRUE(mode) << json;
    EXPECT_EQ(mode->rfind("\"pread", 0), 0u) << *mode;
    EXPECT_EQ(*mode == "\"pread+O_DIRECT\"", std::string(direct) == "on") << *mode;
    EXPECT_EQ(json_u64(json, {"reads"}), 6u);
    EXPECT_EQ(json_u64(json, {"io", "demand", "requests"}), 6u) << json;
    EXPECT_GE(json_u64(json, {"io", "demand", "reads"}), 6u) << json;
    EXPECT_GE(json_u64(json, {"io", "demand", "bytes"}), 6u * 3 * 139264) << json;
    EXPECT_EQ(json_u64(json, {"io", "demand", "errors"}), 0u) << json;
    EXPECT_GE(json_u64(json, {"io", "queue_depth"}), 1u) << json;
    EXPECT_GE(json_u64(json, {"io", "in_flight_peak"}), 1u) << json;
    EXPECT_EQ(json_u64(json, {"io", "in_flight"}), 0u) << json;
    // Every field of the io block is there.
    for (const char* k : {"retries", "short_reads", "merged_spans", "fixed_buffers",
                          "fixed_files", "prefetch_bytes_cap"})
      EXPECT_TRUE(json_field(json, {"io", k})) << k << " missing in " << json;
    for (const char* k : {"requests", "reads", "bytes", "errors", "cancelled", "latency_p50_us",
                          "latency_p99_us"})
      EXPECT_TRUE(json_field(json, {"io", "prefetch", k})) << k << " missing in " << json;
    EXPECT_GE(json_u64(json, {"io", "demand", "latency_p99_us"}),
              json_u64(json, {"io", "demand", "latency_p50_us"}));
    // The auto prefetch cap: queue_depth (32) * max_request_bytes (1 MiB) / 2.
    EXPECT_EQ(json_u64(json, {"io", "prefetch_bytes_cap"}), 16u << 20) << json;
    std::string text = ctl_stats(false);
    EXPECT_NE(text.find("io mode"), std::string::npos) << text;
    EXPECT_NE(text.find("pread"), std::string::npos) << text;
  }
}

TEST_F(IoFaultTest, FailedReadFailsTheAcquireAndIsReadAgainNextTime) {
  start("moepoold-faulty", "[io]\nmode = \"auto\"\n", {"--fail-read", "1"});
  expect_failed_read_then_reread("Input/output error");
}

TEST_F(IoFaultTest, ShortReadFailsTheAcquireAndIsReadAgainNextTime) {
  start("moepoold-faulty", "[io]\nmode = \"pread\"\n", {"--short-read", "1"});
  expect_failed_read_then_reread("short read: got 0 of");
}

TEST_F(IoFaultTest, StalledReadCompletesOnceReleased) {
  start("moepoold-faulty", "[io]\nmode = \"auto\"\n", {"--stall-read", "1"});  // until SIGUSR1
  auto worker = connect("stalled-worker");
  ASSERT_NE(worker, nullptr);
  const uint64_t id = model_.id;
  auto pending = std::async(std::launch::async, [&worker, id] {
    const std::vector<uint32_t> e = {2};
    return worker->acquire(id, 1, e);
  });
  // The slot is loading (used) while its read is held back.
  ASSERT_TRUE(poll_stats([](const PoolStats& s) { return s.used_bytes > 0; }));
  std::string json = ctl_stats(true);
  EXPECT_GE(json_u64(json, {"io", "in_flight"}), 1u) << json;
  EXPECT_EQ(pending.wait_for(std::chrono::seconds(0)), std::future_status::timeout)
      << "the acquire finished while its read was stalled";
  daemon_.signal(SIGUSR1);
  auto leases = pending.get();
  ASSERT_TRUE(leases.ok()) << leases.status().to_string();
  expect_bytes_match_file(1, *leases);
  EXPECT_TRUE(worker->release(*leases).ok());
  json = ctl_stats(true);
  EXPECT_EQ(json_u64(json, {"io", "demand", "errors"}), 0u) << json;
  EXPECT_EQ(json_u64(json, {"read_errors"}), 0u) << json;
}

TEST_F(IoFaultTest, TimedStallEndsByItself) {
  start("moepoold-faulty", "[io]\nmode = \"pread\"\n", {"--stall-read", "1", "--stall-ms", "200"});
  const std::vector<uint32_t> e = {4};
  auto l = client_->acquire(model_.id, 0, e);  // blocks until the stall ends
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  expect_bytes_match_file(0, *l);
  EXPECT_TRUE(client_->release(*l).ok());
}

TEST_F(IoFaultTest, PrefetchEvictedWhileLoadingIsCancelledQuietly) {
  start("moepoold-faulty", "[io]\nmode = \"auto\"\n", {"--stall-read", "1"});
  const std::vector<uint32_t> e = {6};
  auto started = client_->prefetch(model_.id, 1, e);
  ASSERT_TRUE(started.ok()) << started.status().to_string();
  ASSERT_EQ(*started, 1u);
  ASSERT_TRUE(poll_stats([](const PoolStats& s) { return s.used_bytes > 0; }));
  auto [rc, out] = run({bin("moepoolctl"), "--socket", socket_, "evict", model_hex(), "--json"});
  ASSERT_EQ(rc, 0) << out;
  EXPECT_EQ(json_u64(squeeze(out), {"evicted"}), 1u) << out;
  EXPECT_EQ(json_u64(squeeze(out), {"still_pinned"}), 0u) << out;
  daemon_.signal(SIGUSR1);  // the stalled read finishes; the request completes cancelled
  ASSERT_TRUE(poll_stats([](const PoolStats& s) { return s.used_bytes == 0; }))
      << "the cancelled prefetch's slot was never freed";
  std::string json = ctl_stats(true);
  EXPECT_EQ(json_u64(json, {"read_errors"}), 0u) << json;
  EXPECT_EQ(json_u64(json, {"io", "prefetch", "errors"}), 0u) << json;
  EXPECT_EQ(json_u64(json, {"io", "prefetch", "cancelled"}), 1u) << json;
  // The expert was forgotten: an acquire reads it again and gets the file's bytes.
  auto l = client_->acquire(model_.id, 1, e);
  ASSERT_TRUE(l.ok()) << l.status().to_string();
  EXPECT_FALSE((*l)[0].hit);
  expect_bytes_match_file(1, *l);
  EXPECT_TRUE(client_->release(*l).ok());
}

TEST_F(IoFaultTest, ProductionMoepooldHasNoFaultFlags) {
  auto [rc, out] = run({bin("moepoold"), "--fail-read", "1", "--print-config"});
  EXPECT_NE(rc, 0) << out;
}

}  // namespace
}  // namespace moepool::testing
