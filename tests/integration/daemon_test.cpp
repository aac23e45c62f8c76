// moepoold end to end: a real daemon, real worker processes, real files.
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>
#include <fstream>
#include <iterator>

#include "common/catalog.h"
#include "tests/integration/daemon_harness.h"

namespace moepool::testing {
namespace {

// 4 layers x 16 experts of q8_0, embd 256, ffn 512: 3 x 139264 bytes per expert.
std::vector<std::string> small_model() {
  return {"--layers", "4", "--experts", "16", "--embd", "256", "--ffn", "512", "--type", "q8_0"};
}

std::string join(const std::vector<uint32_t>& v) {
  std::string s;
  for (uint32_t e : v) s += (s.empty() ? "" : ",") + std::to_string(e);
  return s;
}

TEST_F(DaemonFixture, ThreeWorkersAcquireOverlappingExpertsAndSeeFileBytes) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("16M");
  // Overlapping sets, each process repeating so their acquires interleave.
  std::vector<std::vector<uint32_t>> sets = {{0, 1, 2, 3}, {2, 3, 4, 5}, {5, 6, 0, 2}};
  std::vector<Process> workers;
  for (const auto& s : sets)
    workers.emplace_back(std::vector<std::string>{test_bin("test_worker"), socket_, model, "1", join(s),
                                                  "--repeat", "20"});
  for (auto& w : workers) {
    std::string out = w.read_all();
    EXPECT_EQ(w.wait(), 0) << out;
    EXPECT_NE(out.find("ok verified"), std::string::npos) << out;
  }
  auto c = connect();
  auto st = c->stats();
  ASSERT_TRUE(st.ok());
  EXPECT_EQ(st->misses, 7u) << "each distinct expert read once, then shared";
  EXPECT_EQ(st->hits, 3u * 4 * 20 - 7);
  EXPECT_EQ(st->pinned_bytes, 0u);
}

TEST_F(DaemonFixture, PreadFallbackServesTheSameBytes) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("8M", {"--io-mode", "pread", "--no-direct"});
  auto [rc, status] = run({bin("moepoolctl"), "--socket", socket_, "status"});
  ASSERT_EQ(rc, 0) << status;
  EXPECT_NE(status.find("pread"), std::string::npos) << "status names the I/O path: " << status;
  Process w({test_bin("test_worker"), socket_, model, "3", "0,5,9,15", "--repeat", "3"});
  std::string out = w.read_all();
  EXPECT_EQ(w.wait(), 0) << out;
  EXPECT_NE(out.find("ok verified"), std::string::npos) << out;
}

TEST_F(DaemonFixture, BenchReplaysASyntheticTraceWithVerification) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("8M");  // 19 slots for 64 experts: evictions happen, 3 x top-4 pins fit
  auto [rc, out] = run({bin("moepool-bench"), "--socket", socket_, "--model", model, "--synthetic",
                        "layers=4,experts=16,top_k=4,seed=3", "--workers", "3", "--steps", "40",
                        "--verify"});
  EXPECT_EQ(rc, 0) << out;
  EXPECT_NE(out.find(", 0 mismatches"), std::string::npos) << out;
  EXPECT_EQ(out.find("verified 0 bytes"), std::string::npos) << out;
}

TEST_F(DaemonFixture, KilledWorkerLosesItsPins) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("2M");  // 4 slots of ~420 KiB
  Process holder({test_bin("test_worker"), socket_, model, "0", "0,1,2,3", "--hold"});
  ASSERT_EQ(holder.read_line(), "held 4");
  auto c = connect();
  auto m = c->open_model(model);
  ASSERT_TRUE(m.ok());
  std::vector<uint32_t> other = {9};
  auto denied = c->acquire(m->id, 0, other);
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), Code::kResourceExhausted) << denied.status().to_string();

  holder.signal(SIGKILL);
  holder.wait();
  // The daemon notices the stream's end; poll until the pins are gone.
  bool released = false;
  for (int i = 0; i < 500 && !released; ++i) {
    auto st = c->stats();
    ASSERT_TRUE(st.ok());
    released = st->pinned_bytes == 0;
    if (!released) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(released) << "pins of a SIGKILLed worker were never released";
  auto ok = c->acquire(m->id, 0, other);
  ASSERT_TRUE(ok.ok()) << ok.status().to_string();
  EXPECT_TRUE(c->release(*ok).ok());
}

TEST_F(DaemonFixture, PathsOutsideTheRootsArePermissionDenied) {
  synth("m.gguf", small_model());
  fs::create_directories(dir_ / "outside");
  std::string outside = synth("../outside/o.gguf", small_model());
  fs::create_symlink(outside, models() + "/link.gguf");
  start_daemon("4M");
  auto c = connect();
  for (const std::string& p : {std::string("/etc/passwd"), outside, models() + "/link.gguf",
                               models() + "/../outside/o.gguf"}) {
    auto m = c->open_model(p);
    ASSERT_FALSE(m.ok()) << p;
    EXPECT_EQ(m.status().code(), Code::kPermissionDenied) << p << ": " << m.status().to_string();
  }
  EXPECT_TRUE(c->open_model(models() + "/m.gguf").ok()) << "the daemon keeps serving";
}

TEST_F(DaemonFixture, OutOfRangeLayerOrExpertIsInvalidArgument) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("4M");
  auto c = connect();
  auto m = c->open_model(model);
  ASSERT_TRUE(m.ok());
  std::vector<uint32_t> one = {1}, bad_expert = {16}, huge = {4000000000u};
  auto layer = c->acquire(m->id, 99, one);
  EXPECT_EQ(layer.status().code(), Code::kInvalidArgument);
  EXPECT_NE(layer.status().message().find("layer 99"), std::string::npos) << layer.status().message();
  auto expert = c->acquire(m->id, 0, bad_expert);
  EXPECT_EQ(expert.status().code(), Code::kInvalidArgument);
  EXPECT_NE(expert.status().message().find("expert 16"), std::string::npos) << expert.status().message();
  EXPECT_EQ(c->acquire(m->id, 0, huge).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(c->acquire(12345, 0, one).status().code(), Code::kNotFound);
  auto st = c->stats();
  EXPECT_EQ(st->used_bytes, 0u) << "bad requests change nothing";
  EXPECT_TRUE(c->acquire(m->id, 0, one).ok());
}

TEST_F(DaemonFixture, MalformedGgufIsAClearErrorAndChangesNothing) {
  std::string good = synth("m.gguf", small_model());
  // A truncated copy of a good model and a file of garbage.
  {
    std::ifstream in(good, std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(models() + "/trunc.gguf", std::ios::binary).write(bytes.data(), 1000);
    std::ofstream(models() + "/junk.gguf", std::ios::binary) << "this is not a gguf file at all";
  }
  start_daemon("4M");
  auto c = connect();
  auto t = c->open_model(models() + "/trunc.gguf");
  ASSERT_FALSE(t.ok());
  EXPECT_EQ(t.status().code(), Code::kInvalidArgument) << t.status().to_string();
  auto j = c->open_model(models() + "/junk.gguf");
  ASSERT_FALSE(j.ok());
  EXPECT_EQ(j.status().code(), Code::kInvalidArgument);
  EXPECT_NE(j.status().message().find("magic"), std::string::npos) << j.status().message();
  EXPECT_TRUE(c->open_model(good).ok());
}

TEST_F(DaemonFixture, RequestLargerThanThePoolIsResourceExhausted) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("1M");  // two slots
  auto c = connect();
  auto m = c->open_model(model);
  ASSERT_TRUE(m.ok());
  std::vector<uint32_t> many = {0, 1, 2, 3, 4, 5, 6, 7};
  auto r = c->acquire(m->id, 0, many);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), Code::kResourceExhausted) << r.status().to_string();
  std::vector<uint32_t> two = {0, 1};
  EXPECT_TRUE(c->acquire(m->id, 0, two).ok());
}

TEST_F(DaemonFixture, TwoWorkersOfOneModelShareOneCopy) {
  std::string model = synth("m.gguf", small_model());
  fs::copy_file(model, models() + "/copy.gguf");
  start_daemon("4M");
  auto a = connect("a"), b = connect("b");
  auto ma = a->open_model(model), mb = b->open_model(models() + "/copy.gguf");
  ASSERT_TRUE(ma.ok() && mb.ok());
  EXPECT_EQ(ma->id, mb->id) << "identity is content, not path";
  std::vector<uint32_t> e = {7};
  auto la = a->acquire(ma->id, 2, e);
  auto lb = b->acquire(mb->id, 2, e);
  ASSERT_TRUE(la.ok() && lb.ok());
  EXPECT_TRUE((*lb)[0].hit);
  EXPECT_EQ((*la)[0].slot_id, (*lb)[0].slot_id);
  EXPECT_EQ(0, std::memcmp((*la)[0].projections[0].data, (*lb)[0].projections[0].data,
                           (*la)[0].projections[0].bytes));
}

TEST_F(DaemonFixture, ModelRewrittenInPlaceIsServedFromTheNewBytes) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("4M");
  auto c = connect();
  auto before = c->open_model(model);
  ASSERT_TRUE(before.ok());
  std::vector<uint32_t> e = {1};
  auto l = c->acquire(before->id, 0, e);
  ASSERT_TRUE(l.ok());
  ASSERT_TRUE(c->release(*l).ok());  // resident, cached by the daemon

  // Flip a byte in the middle of that expert, in place.
  auto cat = Catalog::open(model);
  ASSERT_TRUE(cat.ok());
  Extent x = cat->layer(0)->projections[0].expert_extent(1);
  int fd = ::open(model.c_str(), O_RDWR);
  ASSERT_GE(fd, 0);
  uint8_t byte = 0;
  off_t at = static_cast<off_t>(x.offset + x.bytes / 2);
  ASSERT_EQ(::pread(fd, &byte, 1, at), 1);
  byte ^= 0x5a;
  ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
  ::close(fd);

  auto after = c->open_model(model);
  ASSERT_TRUE(after.ok()) << after.status().to_string();
  EXPECT_NE(after->id, before->id) << "a changed file is not the model that was cached";
  Process w({test_bin("test_worker"), socket_, model, "0", "1"});
  std::string out = w.read_all();
  EXPECT_EQ(w.wait(), 0) << "the worker must see the file's new bytes: " << out;
}

TEST_F(DaemonFixture, GarbageOnTheSocketsLeavesTheDaemonServing) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("4M");
  for (const std::string& path : {socket_, socket_ + ".fds"}) {
    int fd = socket(AF_UNIX, SOCK_STREAM, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strcpy(addr.sun_path, path.c_str());
    ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::string junk(100000, '\x7f');
    (void)!write(fd, junk.data(), junk.size());
    close(fd);
  }
  auto c = connect();
  ASSERT_NE(c, nullptr);
  auto m = c->open_model(model);
  ASSERT_TRUE(m.ok());
  std::vector<uint32_t> e = {1};
  EXPECT_TRUE(c->acquire(m->id, 0, e).ok());
}

TEST_F(DaemonFixture, CtlStatsReportsCountersAsJson) {
  std::string model = synth("m.gguf", small_model());
  start_daemon("4M");
  {
    auto c = connect();
    auto m = c->open_model(model);
    std::vector<uint32_t> e = {1, 2};
    auto l = c->acquire(m->id, 0, e);
    ASSERT_TRUE(l.ok());
    ASSERT_TRUE(c->release(*l).ok());
  }
  auto [rc, json] = run({bin("moepoolctl"), "--socket", socket_, "stats", "--json"});
  ASSERT_EQ(rc, 0) << json;
  std::string out;  // compare without whitespace
  for (char ch : json)
    if (!isspace(static_cast<unsigned char>(ch))) out += ch;
  for (const char* key : {"\"pool_bytes\"", "\"used_bytes\"", "\"hits\"", "\"misses\":2",
                          "\"bytes_read\"", "\"models\""})
    EXPECT_NE(out.find(key), std::string::npos) << key << " missing in " << out;
  auto [rc2, human] = run({bin("moepoolctl"), "--socket", socket_, "stats"});
  EXPECT_EQ(rc2, 0) << human;
  auto [rc3, models_out] = run({bin("moepoolctl"), "--socket", socket_, "models"});
  EXPECT_EQ(rc3, 0);
  EXPECT_NE(models_out.find("m"), std::string::npos);
}

TEST_F(DaemonFixture, SigtermStopsCleanlyAndRemovesTheSockets) {
  start_daemon("4M");
  daemon_.signal(SIGTERM);
  EXPECT_EQ(daemon_.wait(), 0);
  EXPECT_FALSE(fs::exists(socket_));
  EXPECT_FALSE(fs::exists(socket_ + ".fds"));
}

TEST_F(DaemonFixture, SecondDaemonOnALiveSocketRefusesToStart) {
  start_daemon("4M");
  auto [rc, out] = run({bin("moepoold"), "--socket", socket_, "--pool-size", "4M", "--model-root",
                        models(), "--state-dir", (dir_ / "state2").string()});
  EXPECT_NE(rc, 0);
  auto c = connect();
  EXPECT_NE(c, nullptr) << "the first daemon still serves";
}

}  // namespace
}  // namespace moepool::testing
